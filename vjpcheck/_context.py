"""What one property run knows and counts, for one rule and one dtype."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

import hypothesis
import numpy as np

from vjpcheck._rules import Rule
from vjpcheck._strategies import ShapeOptions


@dataclasses.dataclass
class Stats:
    """Counts from one property run: examples, discards by reason, worst error ratio."""

    examples: int = 0
    discarded: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    worst_ratio: float = 0.0
    # The example being run, as (argument names, primals), for reports on examples
    # that never finish; formatted only then.
    current: tuple[Sequence[str], Sequence[object]] | None = None

    def describe_current(self) -> list[str]:
        """Return "name = value" lines for the example being run."""
        if self.current is None:
            return []
        names, primals = self.current
        return [f"{name} = {np.array2string(np.asarray(value), threshold=20)}" for name, value in zip(names, primals)]

    def record(self, ratio: float) -> None:
        self.examples += 1
        self.worst_ratio = max(self.worst_ratio, ratio)

    def discard(self, reason: str) -> None:
        self.note_discard(reason)
        hypothesis.reject()

    def note_discard(self, reason: str) -> None:
        self.discarded[reason] += 1


@dataclasses.dataclass
class Context:
    """Everything a property needs for one rule and one dtype."""

    rule: Rule
    dtype: np.dtype
    shapes: ShapeOptions
    rtol: float | None
    atol: float | None
    pool: Sequence[Rule]
    max_links: int
    stats: Stats
    # The property being run, for failure headers (name and sentence).
    prop: Any = None
