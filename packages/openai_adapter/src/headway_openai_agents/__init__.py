"""headway_openai_agents: adapter skeleton; the adapter lands with its own issue."""

__all__: list[str] = []
