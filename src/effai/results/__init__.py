"""effai's result records: typed, frozen, JSON round-trip with a schema version.

The bottom layer of the study / search / report triangle: the study and the search write
these records, the reports and the CLI read them, and none of them imports another's
internals. It imports nothing of effai but `errors` and `fileio`.

- `records`: `VariantRecord` (one variant or trial) with its `Cost` (size, MACs, `Latency`
  with its spread and conditions, `Energy` with its method), `Evaluation`, `Harm`, per-target
  `TargetFit`, notes and error;
- `pareto`: `AXES`, `dominates`, `pareto_front`, `Constraints`, `violations`, `select`;
- `summary`: `StudyResult` (the variants, fronts, selection, `BaseModelInfo`, data set);
- `units`: one parser and one formatter per unit.

>>> r = VariantRecord("int8", accuracy=0.98, cost=Cost(size_bytes=64_000, energy=Energy(1.2e-6)))
>>> fmt_bytes(r.size_bytes), fmt_joules(r.energy_j), r.to_dict()["cost"]["size_bytes"]
('64.0 KB', '1.2 µJ', 64000)
"""

from effai.results.evaluation import AccuracyInterval, Evaluation, GroupHarm, Harm, Paired
from effai.results.pareto import (
    AXES,
    Axis,
    Constraints,
    Selection,
    Verdict,
    dominates,
    feasible,
    leader,
    margins,
    pareto_front,
    select,
    violations,
)
from effai.results.records import Artifact, Cost, Energy, Latency, Manifest, TargetFit, VariantRecord
from effai.results.serial import SCHEMA_VERSION, Record
from effai.results.summary import BaseModelInfo, DatasetInfo, Environment, StudyResult
from effai.results.units import (
    fmt_bytes,
    fmt_count,
    fmt_fraction,
    fmt_joules,
    fmt_ms,
    parse_bytes,
    parse_ms,
    parse_quantity,
)

__all__ = [
    "AXES", "SCHEMA_VERSION", "AccuracyInterval", "Artifact", "Manifest", "Axis", "BaseModelInfo", "Constraints", "Cost", "DatasetInfo", "Energy",
    "Environment", "Evaluation", "GroupHarm", "Harm", "Latency", "Paired", "Record", "Selection", "StudyResult", "TargetFit",
    "VariantRecord", "Verdict", "dominates", "fmt_bytes", "fmt_count", "fmt_fraction", "fmt_joules", "fmt_ms",
    "feasible", "leader", "margins", "pareto_front", "parse_bytes", "parse_ms", "parse_quantity", "select", "violations",
]
