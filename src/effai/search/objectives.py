"""What the search optimises and must meet: objective values of a trial's record, the budgets
(from the config or the hardware target), and the Pareto front of the feasible trials; all
from `effai.results`, so the search and the study rank variants the same way."""

from __future__ import annotations

from effai.results import AXES, Constraints, VariantRecord, pareto_front
from effai.results.pareto import accuracy
from effai.search.config import SearchConfig


def budgets(cfg: SearchConfig) -> Constraints:
    """RAM / flash / latency budgets: the config's, else the hardware target's RAM and storage."""
    b = cfg.constraints
    ram, flash = b.max_ram, b.max_flash
    if cfg.target:
        from effai import hardware

        t = hardware.load_catalogue().get(cfg.target)  # an unknown name fails here, before any work
        ram = int(t.spec.ram.value) if ram is None else ram
        if flash is None and t.spec.storage is not None:
            flash = int(t.spec.storage.value)
    return Constraints(max_size_bytes=flash, max_ram_bytes=ram, max_latency_ms=b.max_latency_ms)


def objective(r: VariantRecord, name: str, accuracy_on: str = "val") -> float | None:
    """The value of objective `name` (accuracy on the split the search optimises, or a cost axis).

    >>> from effai.results import Cost, VariantRecord
    >>> objective(VariantRecord("x", accuracy=0.9, val_accuracy=0.8, cost=Cost(size_bytes=10)), "accuracy")
    0.8
    """
    return accuracy(r, accuracy_on) if name == "accuracy" else AXES[name].of(r)  # type: ignore[arg-type]


def search_front(trials: list, cfg: SearchConfig) -> list:
    """The feasible trials no other feasible trial dominates on the objectives (repeats of an
    earlier trial's variant left out), sorted by the first cost."""
    pts = [t for t in trials if t.feasible and t.same_as is None]
    costs = [o for o in cfg.objectives if o != "accuracy"]
    return pareto_front(pts, costs, on=cfg.accuracy_on, of=lambda t: t.record)
