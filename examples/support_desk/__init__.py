"""The customer-support domain every example agent shares: a SQLite order desk, its tools, its policy."""

from .domain import TOOL_SPECS, SupportDesk, ToolError
from .scenarios import SCENARIOS, Scenario, Step

POLICY_FILE = __file__.rsplit("/", 1)[0] + "/policy.toml"

__all__ = ["POLICY_FILE", "SCENARIOS", "TOOL_SPECS", "Scenario", "Step", "SupportDesk", "ToolError"]
