"""The whole gauntlet: generate tasks and fault copies, play them on every path, score and compare."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from examples.support_desk import POLICY_FILE as EXAMPLE_POLICY_FILE
from headway import Policy

from .cases import Case, clean_case
from .faults import inject
from .run import Outcome, run
from .score import Disagreement, Report, compare, score
from .tasks import Task, generate

POLICY_FILE = str(Path(__file__).with_name("policy.toml"))
ADAPTERS = ("langgraph", "openai_agents")


@dataclass
class Gauntlet:
    seed: int
    tasks: list[Task]
    sample: list[Task]
    reports: dict[str, Report] = field(default_factory=dict)  # "core", "example policy", "<path> (sample)"
    compared: int = 0
    labelled_steps: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def cases_for(tasks: Sequence[Task], seed: int) -> list[Case]:
    """Each task's clean run followed by its fault copies."""
    return [c for t in tasks for c in (clean_case(t), *inject(t, seed))]


def pick_sample(tasks: Sequence[Task], seed: int, n: int) -> list[Task]:
    """At least `n` tasks for the adapters: first every task that brings a fault variant not yet covered,
    then the earliest others, so every variant the full run has is played on the adapters too."""
    covered: set[tuple[str, str]] = set()
    chosen: list[Task] = []
    for t in tasks:
        variants = {(c.label.cls, c.label.variant) for c in inject(t, seed) if c.label is not None}
        if not variants <= covered:
            chosen.append(t)
            covered |= variants
    for t in tasks:
        if len(chosen) >= n:
            break
        if t not in chosen:
            chosen.append(t)
    order = {t.name: i for i, t in enumerate(tasks)}
    return sorted(chosen, key=lambda t: order[t.name])


def _timed(g: Gauntlet, label: str, path: str, cases: Sequence[Case], policy: Policy) -> list[Outcome]:
    t0 = time.perf_counter()
    out = run(path, cases, policy)
    g.seconds[label] = time.perf_counter() - t0
    return out


def evaluate(
    seed: int = 7,
    tasks: int = 400,
    sample: int = 40,
    adapters: Sequence[str] = ADAPTERS,
    policy_file: str = POLICY_FILE,
    baseline_file: str | None = EXAMPLE_POLICY_FILE,
) -> Gauntlet:
    """Score the gauntlet policy on every case through the core, the example policy too (`baseline_file`),
    and the same policy on a sample through each adapter, checking they decide alike."""
    policy = Policy.load(policy_file)
    all_tasks = generate(seed, tasks)
    g = Gauntlet(seed, all_tasks, pick_sample(all_tasks, seed, sample) if adapters else [])
    core = _timed(g, "core", "core", cases_for(all_tasks, seed), policy)
    g.reports["core"] = score("core", policy_file, core)
    if baseline_file is not None:
        base = _timed(g, "example policy", "core", cases_for(all_tasks, seed), Policy.load(baseline_file))
        g.reports["example policy"] = score("core", baseline_file, base)
    if not adapters:
        return g
    # The adapters play the core's settled scripts (a person only answers what headway asked).
    names = {t.name for t in g.sample}
    core_sample = [o for o in core if o.case.task.name in names]
    settled = [o.case for o in core_sample]
    paths: dict[str, list[Outcome]] = {"core": core_sample}
    for path in adapters:
        paths[path] = _timed(g, path, path, settled, policy)
    for path, outs in paths.items():
        g.reports[f"{path} (sample)"] = score(path, policy_file, outs)
    g.compared, g.disagreements = compare(paths)
    g.labelled_steps = sum(len(c.labelled) for c in settled)
    return g
