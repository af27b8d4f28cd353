"""headway_langgraph: adapter skeleton; the adapter lands with its own issue."""

__all__: list[str] = []
