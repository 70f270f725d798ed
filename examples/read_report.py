"""Run a small study, then read its machine-readable report: the choice, the reasons, every
variant's numbers and which targets it fits.

Run: .venv/bin/python examples/read_report.py
Guide: docs/guides/report.md
"""

import os
from pathlib import Path

from effai.results import StudyResult, fmt_bytes, fmt_ms
from effai.study import StudyConfig, run

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"

out = Path("runs/report-example")
run(StudyConfig(dataset="digits", model="lenet300_100", quick=True, epochs=1 if QUICK else None,
                variants=("fp32", "int8_ptq") if QUICK else None, out=str(out)))
res = StudyResult.load(out / "result.json")
print(res.base.describe())
print("chosen:", res.selection.best, "-", res.selection.reason)
for r in res.selection.rejected:
    print(" ", r.name, r.kind, r.reason)
for v in res.variants:
    fits = [t for t, f in v.targets.items() if f.fits]
    print(f"{v.name:14s} acc {v.accuracy:.3f} {fmt_bytes(v.size_bytes):>9s} {fmt_ms(v.latency_ms):>9s} fits {fits}")
print("open", out / "report.html")
