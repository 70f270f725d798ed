"""A small multi-objective search (accuracy vs size) on one machine; the same config runs on
a Ray cluster with backend="ray" and ray_address (see docs/guides/search-cluster.md).

Run: .venv/bin/python examples/search_local.py
Guide: docs/guides/search-cluster.md
"""

import os

from effai.search import SearchConfig, run

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"

cfg = SearchConfig(
    dataset="digits",
    n_trials=1 if QUICK else 12,
    out="runs/search-example",
    train={"epochs": 1 if QUICK else 8},
    space={"width_mult": [0.25] if QUICK else [0.25, 0.5, 1.0], "bits": [8] if QUICK else [32, 8, 4],
           "prune_ratio": [0.0] if QUICK else [0.0, 0.5]},
)
result = run(cfg)
for t in result.front:
    print(t.name)
