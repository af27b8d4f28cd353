"""Example agents: templates to copy. `support_desk` holds the domain and policy the examples share."""
