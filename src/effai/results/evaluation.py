"""What a model does on a test set (`Evaluation`) and what it loses against its base (`Harm`).

`effai.evaluate` computes them; they live here, with the other result records, so the study,
the search and the report read them without importing the evaluation code (or torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from effai.results.serial import Record


@dataclass(frozen=True)
class Evaluation(Record):
    """What a model does on a test set. `predictions` are kept per example so that a
    compressed model can later be compared with its base example by example (`compare`)."""

    n: int
    accuracy: float
    topk: dict[str, float]  # {"top5": 0.99}
    per_class: list[float | None]  # recall of each class
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    ece: float  # expected calibration error, 15 bins
    class_names: list[str]
    predictions: list[int]
    labels: list[int]
    slices: dict[str, dict] = field(default_factory=dict)  # {slice: {"accuracy", "n"}}
    robustness: dict[str, list[float]] = field(default_factory=dict)  # {corruption: [acc at sev 1..]}
    severities: list[int] = field(default_factory=list)

    @property
    def mean_corrupted_accuracy(self) -> float | None:
        """Mean accuracy over every corruption and severity measured (None if none were)."""
        accs = [a for curve in self.robustness.values() for a in curve]
        return sum(accs) / len(accs) if accs else None


@dataclass(frozen=True)
class GroupHarm(Record):
    """One class's (or slice's) accuracy against the base, and whether its drop is flagged."""

    name: str
    n: int
    base: float  # the base's accuracy on the group
    variant: float  # the variant's accuracy on the group
    delta: float  # variant - base
    excess: float  # delta - the overall delta
    z: float  # paired z statistic of the excess
    flagged: bool  # loses significantly (and materially) more than overall


@dataclass(frozen=True)
class Harm(Record):
    """A paired comparison with the base, class by class and slice by slice (`effai.evaluate.compare`)."""

    overall_delta: float  # variant accuracy - base accuracy
    classes: list[GroupHarm]  # one per class
    slices: list[GroupHarm] = field(default_factory=list)  # the same, per user-given slice
    exemplars: list[int] = field(default_factory=list)  # CIEs: base right, variant wrong
    fixed: list[int] = field(default_factory=list)  # base wrong, variant right
    changed: int = 0  # examples whose predicted label changed at all

    @property
    def flagged(self) -> list[str]:
        """Names of the classes and slices that lose significantly more than overall."""
        return [g.name for g in self.classes + self.slices if g.flagged]

    def worst(self, n: int = 3) -> list[GroupHarm]:
        """The `n` classes with the largest excess drop."""
        return sorted(self.classes, key=lambda g: g.excess)[:n]
