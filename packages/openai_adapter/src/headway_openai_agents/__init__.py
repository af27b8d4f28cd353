"""headway for the OpenAI Agents SDK: guarded agents, approvals through RunState, run hooks, tracing.

`guard_agent(agent, guard)` returns a guarded clone; interruptions become `escalations(...)`, a person's
decision is applied with `resolve(...)`, and `resume(...)` continues the run. `install_tracing(guard)`
records the SDK's spans in headway's trace store.
"""

from ._agent import guard_agent
from ._approvals import Escalation, escalations, resolve, resolve_from_store, resume, settle
from ._compat import REQUIRED as SUPPORTED_SDK
from ._compat import check_sdk_version
from ._errors import HeadwayRunIdError, HeadwayStopped
from ._hooks import HeadwayRunHooks
from ._runs import RUN_ID_KEY, headway_run
from ._tracing import HeadwayTracingProcessor, install_tracing

__version__ = "0.1.0"

__all__ = [
    "RUN_ID_KEY",
    "SUPPORTED_SDK",
    "Escalation",
    "HeadwayRunHooks",
    "HeadwayRunIdError",
    "HeadwayStopped",
    "HeadwayTracingProcessor",
    "check_sdk_version",
    "escalations",
    "guard_agent",
    "headway_run",
    "install_tracing",
    "resolve",
    "resolve_from_store",
    "resume",
    "settle",
]
