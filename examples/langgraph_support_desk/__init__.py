"""The support-desk agent on LangGraph, guarded by headway: `python -m examples.langgraph_support_desk`."""
