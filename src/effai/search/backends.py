"""Where trials run: in this process, in local worker processes, or as Ray tasks.

Every backend has the same three verbs: `submit(variant) -> handle`, `wait(handles) -> done`
(at least one finished handle with its result) and `close()`. Workers get plain arguments
(the variant dict and the config as JSON) and return plain dicts, so nothing but the driver
touches the Optuna storage: one writer, no database locks across machines.

>>> from effai.search.config import SearchConfig
>>> b = LocalBackend(SearchConfig(workers=1), fn=lambda v, c: {"ok": True, "record": v})
>>> h = b.submit({"x": 1})
>>> b.wait([h])
[(0, {'ok': True, 'record': {'x': 1}})]
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures

from effai.errors import InputError
from effai.search.config import SearchConfig
from effai.search.trial import run_trial


def _init_worker(threads: int) -> None:
    """Process-pool worker set-up: die with the driver (Linux), and use `threads` torch threads."""
    try:  # PR_SET_PDEATHSIG: a SIGKILLed driver takes its workers with it
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


class LocalBackend:
    """One worker: trials run in this process. Several: a pool of spawned processes."""

    def __init__(self, cfg: SearchConfig, fn=run_trial):
        self.cfg, self.fn = cfg, fn
        self.cfg_json = cfg.model_dump_json()
        self.pool = None
        if cfg.workers > 1:
            import multiprocessing as mp

            self.pool = ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn"),
                                            initializer=_init_worker, initargs=(cfg.threads_per_trial,))
        self._futures: dict[int, Future] = {}
        self._next = 0

    def submit(self, variant: dict) -> int:
        h, self._next = self._next, self._next + 1
        if self.pool is None:
            f: Future = Future()
            f.set_result(self.fn(variant, self.cfg_json))
        else:
            f = self.pool.submit(self.fn, variant, self.cfg_json)
        self._futures[h] = f
        return h

    def wait(self, handles: list[int]) -> list[tuple[int, dict]]:
        futs = {self._futures[h]: h for h in handles}
        done, _ = wait_futures(list(futs), return_when=FIRST_COMPLETED)
        out = []
        for f in done:
            h = futs[f]
            del self._futures[h]
            try:
                out.append((h, f.result()))
            except Exception as e:  # a worker process died
                out.append((h, {"ok": False, "error": f"worker failed: {type(e).__name__}: {e}"[:500]}))
        return sorted(out)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


class RayBackend:
    """Trials as Ray tasks: on a local Ray started here (`workers` CPUs, loopback only, no
    dashboard), or on an existing cluster at `ray_address`. Each task asks for
    `threads_per_trial` CPUs and sets torch to that many threads."""

    def __init__(self, cfg: SearchConfig, fn=run_trial):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
        try:
            import ray
        except ImportError:
            raise InputError("--backend ray needs ray: pip install 'effai[all]'") from None
        self.ray, self.cfg = ray, cfg
        self.owned = not ray.is_initialized()
        if self.owned:
            if cfg.ray_address:
                ray.init(address=cfg.ray_address, log_to_driver=False, logging_level=logging.ERROR)
            else:
                ray.init(num_cpus=cfg.workers, include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False, logging_level=logging.ERROR)
        self.remote = ray.remote(num_cpus=cfg.threads_per_trial, max_retries=0)(fn)
        self.cfg_ref = ray.put(cfg.model_dump_json())
        self._refs: dict[int, object] = {}
        self._next = 0

    def submit(self, variant: dict) -> int:
        h, self._next = self._next, self._next + 1
        self._refs[h] = self.remote.remote(variant, self.cfg_ref)
        return h

    def wait(self, handles: list[int]) -> list[tuple[int, dict]]:
        by_ref = {self._refs[h]: h for h in handles}
        ready, _ = self.ray.wait(list(by_ref), num_returns=1)
        out = []
        for ref in ready:
            h = by_ref[ref]
            del self._refs[h]
            try:
                out.append((h, self.ray.get(ref)))
            except Exception as e:  # the task's worker died (e.g. out of memory, node lost)
                out.append((h, {"ok": False, "error": f"ray task failed: {type(e).__name__}: {e}"[:500]}))
        return sorted(out)

    def close(self) -> None:
        for ref in self._refs.values():
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass
        if self.owned:
            self.ray.shutdown()


def make_backend(cfg: SearchConfig, fn=run_trial):
    """The backend `cfg.backend` names."""
    return RayBackend(cfg, fn) if cfg.backend == "ray" else LocalBackend(cfg, fn)
