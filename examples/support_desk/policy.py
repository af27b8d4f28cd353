"""The support desk's headway policy, loaded from `policy.toml` beside this file."""

from __future__ import annotations

from headway import Policy

from . import POLICY_FILE


def load_policy() -> Policy:
    return Policy.load(POLICY_FILE)
