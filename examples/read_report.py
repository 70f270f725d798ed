"""Run a small study, then read its machine-readable report: the choice, the reasons, every
variant's numbers and which targets it fits.

Run: .venv/bin/python examples/read_report.py
Guide: docs/guides/report.md
"""

import json
import os
from pathlib import Path

from effai.study import StudyConfig, run

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"

out = Path("runs/report-example")
run(StudyConfig(dataset="digits", model="lenet300_100", quick=True, epochs=1 if QUICK else None,
                variants=("fp32", "int8_ptq") if QUICK else None, out=str(out)))
res = json.loads((out / "result.json").read_text())
print("chosen:", res["selection"]["best"], "-", res["selection"]["reason"])
for r in res["selection"]["rejected"]:
    print(" ", r["name"], r["kind"], r["reason"])
for v in res["variants"]:
    fits = [t for t, f in v["targets"].items() if f["fits"]]
    print(f"{v['name']:14s} acc {v['accuracy']:.3f} {v['size_bytes']:8d} B {v['latency_ms']:.4f} ms fits {fits}")
print("open", out / "report.html")
