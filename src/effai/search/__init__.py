"""effai.search: multi-objective search over compressed variants (Optuna; local or Ray workers).

`run(SearchConfig(...))` samples variants (zoo family, width and resolution multipliers,
channel pruning, global or per-layer bit-width, KD, QAT), trains and measures each in a worker,
and returns the Pareto front over accuracy and the chosen costs. Storage is an Optuna RDB
(SQLite by default): a killed search resumes where it stopped.

>>> import tempfile
>>> cfg = SearchConfig(n_trials=1, out=tempfile.mkdtemp(), train={"epochs": 1},
...                    space={"width_mult": [0.25], "bits": [8], "prune_ratio": [0.0]})
>>> r = run(cfg)
>>> len(r.trials), r.front[0].name
(1, 'lenet5 w0.25 int8')
"""

from effai.search.config import Budgets, SearchConfig, SpaceConfig, TrainSettings, load_config
from effai.search.objectives import budgets, objective, search_front
from effai.search.run import SearchResult, TrialRecord, run

__all__ = ["Budgets", "SearchConfig", "SearchResult", "SpaceConfig", "TrainSettings", "TrialRecord", "budgets",
           "load_config", "objective", "run", "search_front"]
