"""The study: from one base model, build compressed and alternative variants, profile and
evaluate each the same way, and pick the best one under the user's constraints.

Follow it from the CLI down: `effai study` -> `run(StudyConfig)` (runner.py) -> the variant
registry (variants.py) -> artifacts.py (the file each variant deploys as, OUT/variants/NAME/,
which everything after is measured on) -> measure.py (profile, latency, hardware fit) and
effai.evaluate -> effai.results (the records, Pareto fronts, selection with reasons) ->
artifacts.ship (the winner in OUT/best/) -> effai.report.

>>> cfg = StudyConfig(dataset="mnist5k", max_size="250KB", target="nano33ble")
>>> cfg.constraints().max_size_bytes, "int8_ptq" in variant_names()
(250000, True)
"""

from effai.results import Constraints, Selection, StudyResult, VariantRecord, pareto_front, select, violations
from effai.study.config import StudyConfig
from effai.study.runner import run
from effai.study.variants import VARIANTS, Built, variant
from effai.study.variants import names as variant_names

__all__ = ["VARIANTS", "Built", "Constraints", "Selection", "StudyConfig", "StudyResult", "VariantRecord",
           "pareto_front", "run", "select", "variant", "variant_names", "violations"]
