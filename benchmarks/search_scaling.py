"""Ray scaling: wall time of the same search trials on a local Ray with 1 and with 2 workers.

The same 8 variants (sampled once, seeded) are queued into a fresh SQLite study for each worker
count, so both runs train exactly the same trials; each trial is single-threaded
(`threads_per_trial: 1`). Ray is started once per worker count and its workers warmed (torch and
effai imported) before the clock starts, so the time is the search itself, not Ray's start-up.
Goal: >= 1.7x on 2 cores.
Run: .venv/bin/python benchmarks/search_scaling.py [--trials 8]
"""

import argparse
import os
import tempfile
import time

from common import machine, machine_line, table, write_results

from effai.search import SearchConfig, run
from effai.search.run import open_study


def variants(cfg: SearchConfig, n: int) -> list[dict]:
    """n distinct sets of Optuna parameters, sampled from the space with a seeded random sampler
    (distinct, because the driver reuses the measurement of a repeated variant)."""
    import optuna

    from effai.search.space import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=cfg.seed))
    out = []
    for _ in range(50 * n):
        t = study.ask()
        suggest(t, cfg.space)
        study.tell(t, 0.0)
        if dict(t.params) not in out:
            out.append(dict(t.params))
        if len(out) == n:
            return out
    raise SystemExit(f"the space has fewer than {n} distinct variants")


def _warm():
    import torch  # noqa: F401

    import effai.search.trial  # noqa: F401

    return os.getpid()


def ideal_wall(cpu: list[float], workers: int) -> float:
    """Wall time of running trials taking `cpu` seconds each, in order, on `workers` free cores
    (each trial to the first worker that is free): what the backend would do with dedicated cores.

    >>> ideal_wall([2, 2, 2, 2], 2), ideal_wall([3, 1, 1, 1], 2)
    (4.0, 3.0)
    """
    free = [0.0] * workers
    for c in cpu:
        i = free.index(min(free))
        free[i] += c
    return max(free)


def timed(cfg: SearchConfig, params: list[dict]) -> tuple[float, float, list[float]]:
    """(wall seconds of the search, summed per-trial wall seconds, per-trial CPU seconds) on a fresh
    local Ray with cfg.workers CPUs."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=cfg.workers, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="ERROR")
    try:
        warm = ray.remote(num_cpus=1)(_warm)
        pids = set(ray.get([warm.remote() for _ in range(cfg.workers * 2)]))
        assert len(pids) >= 1
        study = open_study(cfg)
        for p in params:
            study.enqueue_trial(p)
        t0 = time.perf_counter()
        result = run(cfg, write=False)
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    trials = sorted(result.trials, key=lambda t: t.number)
    return wall, sum(t.record.seconds for t in trials), [t.record.details["cpu_seconds"] for t in trials]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    base = dict(dataset="digits", n_trials=args.trials, seed=0, backend="ray", threads_per_trial=1,
                train={"epochs": 20, "finetune_epochs": 2},
                space={"family": ["lenet5"], "width_mult": [0.5, 0.75, 1.0], "prune_ratio": [0.0],
                       "bits": [32, 8, 4]})
    params = variants(SearchConfig(**base), args.trials)
    all_runs = {1: [], 2: []}
    for _ in range(args.rounds):  # interleaved rounds: a burst of outside load hits both alike
        for workers in (1, 2):
            cfg = SearchConfig(**base, workers=workers, out=tempfile.mkdtemp(prefix=f"effai-scaling-{workers}-"))
            all_runs[workers].append(timed(cfg, params))
            print(workers, all_runs[workers][-1], os.getloadavg(), flush=True)
    runs = {w: min(r) for w, r in all_runs.items()}  # the least disturbed round of each
    speedup = runs[1][0] / runs[2][0]
    cpu = runs[1][2]  # per-trial CPU seconds of the least disturbed 1-worker round
    ideal = ideal_wall(cpu, 1) / ideal_wall(cpu, 2)
    m = machine()
    load = os.getloadavg()
    rows = [[w, f"{wall:.1f}", f"{busy:.1f}", f"{sum(c):.1f}", f"{sum(c) / wall:.2f}", f"{runs[1][0] / wall:.2f}x"]
            for w, (wall, busy, c) in runs.items()]
    md = (
        "## Search scaling with Ray (`benchmarks/search_scaling.py`)\n\n"
        f"The same {args.trials} trials (LeNet-5 on digits, width x{{0.5, 0.75, 1}}, weight bits {{32, 8, 4}}, "
        "20 epochs each; sampled once with a seeded random sampler and queued into a fresh SQLite study per run) "
        "run as Ray tasks on a local Ray with 1 and with 2 CPUs; one torch thread per trial; ask-and-tell in the "
        f"driver. Ray is started and its workers warmed before the clock starts. {args.rounds} interleaved rounds; "
        "the table shows each worker count's fastest round. *CPU cores used* = CPU seconds the trials got / wall "
        "seconds.\n\n"
        + table(["Ray workers", "search wall s", "sum of trial wall s", "trial CPU s", "CPU cores used", "speedup"],
                rows)
        + f"\n\n**Measured speedup on 2 workers: {speedup:.2f}x** (goal >= 1.7x). "
        f"Load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {m['cores']} cores. "
        "Trials differ in cost (width and bits), so with few trials the last one on 2 workers runs alone; "
        "the *CPU cores used* column shows how much of the machine the trials really got. "
        f"With the measured per-trial CPU times and 2 free cores, the backend's first-free-worker schedule "
        f"would take {ideal:.2f}x less time than 1 worker (a computed figure, not a measurement). "
        + machine_line(m)
    )
    write_results("search_scaling", {"machine": m, "trials": args.trials, "params": params,
                                     "runs": {str(k): [{"wall_seconds": a, "trial_seconds": b, "trial_cpu_seconds": c}
                                                   for a, b, c in v] for k, v in all_runs.items()},
                                     "ideal_speedup_2_free_cores": ideal,
                                     "speedup": speedup, "loadavg": load}, md)
    print(md)


if __name__ == "__main__":
    main()
