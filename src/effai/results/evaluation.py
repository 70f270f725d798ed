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
class AccuracyInterval(Record):
    """A confidence interval of an accuracy (Wilson score, `effai.evaluate.stats.accuracy_interval`)."""

    low: float
    high: float
    confidence: float = 0.95
    method: str = "wilson"

    def describe(self) -> str:
        """The interval in words.

        >>> AccuracyInterval(0.951, 0.972).describe()
        '95% CI 95.10-97.20%'
        """
        return f"{self.confidence:.0%} CI {self.low * 100:.2f}-{self.high * 100:.2f}%"


@dataclass(frozen=True)
class Paired(Record):
    """A paired test of a variant against another model (`against`) on the same test examples."""

    against: str
    n: int
    lost: int  # examples `against` gets right and this variant wrong
    gained: int  # examples this variant gets right and `against` wrong
    p_value: float
    test: str = "McNemar mid-p"

    @property
    def difference(self) -> float:
        """This variant's accuracy minus `against`'s."""
        return (self.gained - self.lost) / self.n if self.n else 0.0

    def tie(self, alpha: float = 0.05) -> bool:
        """The two accuracies are within noise: the test does not reject equality at `alpha`."""
        return self.p_value >= alpha


@dataclass(frozen=True)
class GroupHarm(Record):
    """One class's (or slice's) accuracy against the base, and whether its drop is flagged."""

    name: str
    n: int
    base: float  # the base's accuracy on the group
    variant: float  # the variant's accuracy on the group
    delta: float  # variant - base
    excess: float  # delta - the overall delta
    z: float  # paired z statistic of the excess (descriptive; the flag is McNemar's)
    flagged: bool  # loses accuracy, and the group's paired McNemar test says so (Holm-corrected)
    p_value: float | None = None  # McNemar (mid-p) on the group's examples, Holm-adjusted over the groups
    broken: int = 0  # the group's examples the base gets right and the variant wrong
    fixed: int = 0  # ... the base gets wrong and the variant right
    min_detectable_drop: float | None = None  # the smallest drop the test sees at this n (80% power)


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
        """Names of the classes and slices whose paired test finds a significant drop."""
        return [g.name for g in self.classes + self.slices if g.flagged]

    def worst(self, n: int = 3) -> list[GroupHarm]:
        """The `n` classes with the largest excess drop."""
        return sorted(self.classes, key=lambda g: g.excess)[:n]
