"""The support-desk agent on the OpenAI Agents SDK: a triage agent that hands refunds to a refunds agent,
guarded by headway with the shared support-desk policy. A template to copy.

`python -m examples.openai_support_desk` plays the six scenarios offline with a scripted model;
`--live` talks to a real model (needs OPENAI_API_KEY).
"""

from .scripted import decisions, play, script
from .support_agents import build_agents, desk_tool

__all__ = ["build_agents", "decisions", "desk_tool", "play", "script"]
