"""The fault-injection gauntlet: correct support-desk runs and copies with one injected fault each, played
through headway's core and both adapters; `python -m bench.gauntlet` prints and writes the results.

`evaluate()` runs it and `markdown()` renders the results for docs/benchmarks.md.
"""

from .evaluate import POLICY_FILE, Gauntlet, evaluate
from .report import KNOWN_GAPS, markdown

__all__ = ["KNOWN_GAPS", "POLICY_FILE", "Gauntlet", "evaluate", "markdown"]
