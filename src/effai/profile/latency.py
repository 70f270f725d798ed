"""Latency: torch eager, ONNX Runtime and OpenVINO, with warm-up, enough repeats and percentiles.

`measure_latency` runs `warmup` calls (at most a quarter of `max_seconds`), then times single calls with `perf_counter_ns`
until it has at least `repeats` samples *and* `min_seconds` of them (at most `max_seconds`).
It reports p50/p90/p99, the IQR, the threads used and throughput at p50, plus the median
process CPU time per call and the load average, because on a shared machine wall time
includes waiting for a core (`contended` is set when the load exceeds the core count). Other capabilities
(quantize, prune, hardware) call it so every latency in effai is measured the same way.

`interleaved` compares several candidates in one run: it calls them in turn, round after
round, so a burst of load from another process hits every candidate alike, and keeps the
median of the rounds. Choosing between models (pruning allocation, INT8 settings, benchmarks)
uses it; `measure_latency` describes one model.

OpenVINO is optional (`pip install 'effai[openvino]'`, part of `all`); it runs ONNX files
directly, INT8 QDQ files with its own INT8 kernels. Its CPU plugin is pinned to f32 inference
precision, because on CPUs with bf16/AMX it would otherwise silently run float models in bf16.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from effai.errors import InputError
from effai.profile.inputs import dynamic_axes, positional, tensors_of


@dataclass(frozen=True)
class Latency:
    """One latency measurement: percentiles in milliseconds per call (one batch)."""

    runtime: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    threads: int
    batch_size: int
    repeats: int
    warmup: int
    throughput: float  # samples per second at p50
    seconds: float  # wall time spent timing
    load_avg: float | None = None  # 1-minute load average when timing started (contention)
    cpu_p50_ms: float | None = None  # median process CPU time per call, all threads (robust to contention)
    contended: bool = False  # wall times include waiting for a core (see `contention`)
    cpu_wall_ratio: float | None = None  # the timed thread's CPU time / wall time, summed over the calls
    run_queue: int | None = None  # most runnable tasks seen (/proc/stat procs_running) before or after timing
    contention: str = ""  # why `contended` is set, in words ("" when it is not)

    def to_dict(self) -> dict:
        return asdict(self)


def export_fp32_onnx(model: torch.nn.Module, path: str | os.PathLike, example_inputs, opset: int = 17, *,
                     dynamic: bool = False) -> Path:
    """Export a float model to ONNX at `path` and return the path (the argument order of
    `effai.quantize.export_onnx`, which also quantizes and verifies; this one only exports).

    `example_inputs` is a tensor, a tuple of tensors or a dict of named tensors (every one
    becomes a graph input under its name; a model returning several outputs keeps its first
    tensor, e.g. the logits). `dynamic=True` marks the batch axis of every input, and the
    sequence axis of integer (token) inputs, dynamic.

    Uses the TorchScript exporter (`dynamo=False`): in torch 2.13 it is still present,
    about 15x faster than the torch.export-based exporter on small models and handles
    any eager model that traces; if it fails the dynamo exporter is tried.

    >>> import tempfile, os
    >>> p = export_fp32_onnx(torch.nn.Linear(4, 2), os.path.join(tempfile.mkdtemp(), "m.onnx"), torch.randn(1, 4))
    >>> p.suffix, p.stat().st_size > 0
    ('.onnx', True)
    """
    model, args, names = positional(model, example_inputs)
    axes = dynamic_axes(names, args) if dynamic else None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset,
                                  input_names=names, dynamic_axes=axes)
            except Exception:  # noqa: BLE001 - fall back to the new exporter
                with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                    torch.onnx.export(model, args, str(path), dynamo=True, external_data=False,
                                      input_names=names)
    finally:
        model.train(was_training)
    return path


def physical_cores() -> int:
    """Physical CPU cores this process may run on (ONNX Runtime's default intra-op thread count):
    distinct core ids in sysfs topology, else the logical CPU count.

    >>> physical_cores() >= 1
    True
    """
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for c in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/topology/core_cpus_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(c))
    return max(1, len(cores))


def ort_session(model: str | os.PathLike | bytes, threads: int):
    """A CPU ONNX Runtime session on an ONNX file (or serialized model bytes): `threads`
    intra-op threads (0: ONNX Runtime's default count, one per physical core), one inter-op
    thread (the graph runs in order), warnings silenced.

    With more than one thread, two settings make timings reproducible on a shared machine (see
    docs/decisions.md, "Timing at ONNX Runtime's default thread count"): the thread count is set
    explicitly, because ONNX Runtime pins the workers of its *default* pool to fixed cores, and a
    pinned worker on a core another process is using stalls every parallel op; and the workers
    stop spinning when a run ends (`session.force_spinning_stop`), so the idle pools of the
    other sessions being compared do not spin against the one being timed (they still spin
    between the ops of a run, as in deployment)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if opts.intra_op_num_threads > 1:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"])


RUNTIMES = ("torch", "onnxruntime", "openvino")


def openvino_core():
    """An OpenVINO Core, or an InputError that says how to install it."""
    try:
        import openvino as ov
    except ImportError:
        raise InputError("runtime 'openvino': OpenVINO is not installed (pip install 'effai[openvino]')") from None
    return ov.Core()


def onnx_runner(path: str | os.PathLike, runtime: str = "onnxruntime", threads: int = 1) -> Callable:
    """A function running an ONNX file on CPU with `runtime` ("onnxruntime" or "openvino") and
    `threads` intra-op threads: `run(*arrays) -> list of output arrays`.

    >>> import tempfile, os
    >>> p = export_fp32_onnx(torch.nn.Linear(4, 2), os.path.join(tempfile.mkdtemp(), "m.onnx"), torch.randn(1, 4))
    >>> onnx_runner(p)(np.ones((1, 4), np.float32))[0].shape
    (1, 2)
    """
    if runtime == "onnxruntime":
        sess = ort_session(path, threads)
        names = [i.name for i in sess.get_inputs()]
        return lambda *xs: sess.run(None, dict(zip(names, xs, strict=True)))
    if runtime != "openvino":
        raise InputError(f"runtime: expected 'onnxruntime' or 'openvino' for an ONNX file, got {runtime!r}")
    compiled = openvino_core().compile_model(str(path), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    n_out = len(compiled.outputs)

    def run(*xs):
        request.infer(dict(enumerate(xs)))
        return [request.get_output_tensor(i).data.copy() for i in range(n_out)]

    return run


Key = TypeVar("Key", bound=Hashable)


CLOCKS = {"wall": "perf_counter_ns", "thread_cpu": "thread_time_ns"}  # clock -> its function in `time`


def interleaved(calls: Mapping[Key, Callable[[], object]], rounds: int = 7, inner: int = 10, warmup: int = 3,
                min_round_ms: float = 0.0, statistic: str = "median", clock: str = "wall") -> dict[Key, float]:
    """Milliseconds per call of each callable, timed side by side.

    Each round calls every callable `inner` times in turn and records its mean; the result is
    the median over `rounds` rounds, so a contention burst that hits one round is discarded
    and hits every candidate alike. `statistic="min"` keeps the fastest round instead: outside
    load only ever adds time, so when a choice must survive bursts that last several rounds,
    the quietest round of each candidate is the fairer comparison. `min_round_ms` raises a fast
    callable's `inner` (from one timed call after warm-up) so that each of its rounds lasts at
    least that long: a sub-millisecond model timed 10 calls at a time measures the clock and
    the scheduler. `clock="thread_cpu"` counts the CPU time of the calling thread instead of
    wall time: for a runtime that computes on the caller's thread (ONNX Runtime at 1 thread) it
    is the work done, which other processes' load barely changes (they take the core away, and
    the time away is not counted); it misses the work of any other thread.

    >>> ms = interleaved({"a": lambda: sum(range(100)), "b": lambda: sum(range(10_000))}, rounds=3, inner=2)
    >>> sorted(ms), ms["a"] < ms["b"]
    (['a', 'b'], True)
    """
    if statistic not in ("median", "min"):
        raise InputError(f"interleaved: statistic must be 'median' or 'min', got {statistic!r}")
    if clock not in CLOCKS:
        raise InputError(f"interleaved: clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    now = getattr(time, CLOCKS[clock])
    if rounds < 1 or inner < 1 or warmup < 0 or min_round_ms < 0:
        raise InputError(f"interleaved: expected rounds >= 1, inner >= 1, warmup >= 0, min_round_ms >= 0, "
                         f"got {rounds}, {inner}, {warmup}, {min_round_ms}")
    for call in calls.values():
        for _ in range(warmup):
            call()
    n_calls = dict.fromkeys(calls, inner)
    if min_round_ms > 0:
        for k, call in calls.items():
            t0 = time.perf_counter_ns()
            call()
            once_ms = max(1e-4, (time.perf_counter_ns() - t0) / 1e6)
            n_calls[k] = int(min(10_000, max(inner, np.ceil(min_round_ms / once_ms))))
    per_round: dict[Key, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for k, call in calls.items():
            t0 = now()
            for _ in range(n_calls[k]):
                call()
            per_round[k].append((now() - t0) / 1e6 / n_calls[k])
    reduce = statistics.median if statistic == "median" else min
    return {k: reduce(v) for k, v in per_round.items()}


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _run_queue() -> int | None:
    """Runnable tasks right now (procs_running in /proc/stat, this process included); None off Linux."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("procs_running "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


# The timed thread ran less than this share of the wall time: it waited for a core.
MIN_CPU_WALL_RATIO = 0.85


def contention(load: float | None, ratio: float | None, run_queue: int | None, threads: int,
               cores: int | None = None) -> str:
    """Why a measurement was contended, from the measurement itself (the timed thread's CPU time
    against wall time, only meaningful single-threaded; the run queue) and the 1-minute load
    average (which lags a run of a few seconds); "" when nothing says so.

    >>> contention(0.5, 0.55, 5, threads=1, cores=2)
    'the timed thread ran 55% of the wall time; 5 runnable tasks on 2 cores'
    >>> contention(0.5, 0.99, 1, threads=1, cores=2)
    ''
    """
    cores = cores or os.cpu_count() or 1
    why = []
    if threads == 1 and ratio is not None and ratio < MIN_CPU_WALL_RATIO:
        why.append(f"the timed thread ran {ratio:.0%} of the wall time")
    if run_queue is not None and run_queue > cores:
        why.append(f"{run_queue} runnable tasks on {cores} cores")
    if load is not None and load > cores:
        why.append(f"load average {load:.1f} on {cores} cores")
    return "; ".join(why)


def _summarise(samples: list[tuple[int, ...]], runtime: str, threads: int, batch: int, warmup: int,
               seconds: float, load: float | None, run_queue: int | None = None) -> Latency:
    """Percentiles of (wall ns, process CPU ns[, timed thread CPU ns]) samples, and the conditions."""
    ms = np.asarray([x[0] for x in samples], dtype=np.float64) / 1e6
    cpu = np.asarray([x[1] for x in samples], dtype=np.float64) / 1e6
    # OpenVINO runs the graph on its own threads, so the calling thread's CPU time says nothing there.
    thread = [x[2] for x in samples if len(x) > 2] if runtime != "openvino" else []
    ratio = float(sum(thread) / max(1, sum(x[0] for x in samples))) if thread else None
    why = contention(load, ratio, run_queue, threads)
    p25, p50, p75, p90, p99 = np.percentile(ms, [25, 50, 75, 90, 99])
    return Latency(runtime=runtime, p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
                   iqr_ms=float(p75 - p25), mean_ms=float(ms.mean()), min_ms=float(ms.min()), threads=threads,
                   batch_size=batch, repeats=len(ms), warmup=warmup,
                   throughput=float(batch / (p50 / 1e3)) if p50 > 0 else float("inf"), seconds=seconds,
                   load_avg=load, cpu_p50_ms=float(np.median(cpu)), contended=bool(why),
                   cpu_wall_ratio=None if ratio is None else round(ratio, 3), run_queue=run_queue, contention=why)


def _time(call, warmup: int, repeats: int, min_seconds: float, max_seconds: float) -> tuple[list, float, int]:
    """(wall, process CPU, thread CPU) ns of each timed call, the seconds spent, the warm-up calls made."""
    start = time.perf_counter()
    done = 0
    while done < warmup and time.perf_counter() - start < 0.25 * max_seconds:
        call()
        done += 1
    samples: list[tuple[int, int, int]] = []
    start = time.perf_counter()
    while True:
        c0, h0, t0 = time.process_time_ns(), time.thread_time_ns(), time.perf_counter_ns()
        call()
        t1, h1, c1 = time.perf_counter_ns(), time.thread_time_ns(), time.process_time_ns()
        samples.append((t1 - t0, c1 - c0, h1 - h0))
        elapsed = time.perf_counter() - start
        if (len(samples) >= repeats and elapsed >= min_seconds) or elapsed >= max_seconds:
            break
    return samples, time.perf_counter() - start, done


def measure_latency(model_or_onnx_path, example_inputs, runtime: str = "torch", threads: int | None = None,
                    warmup: int = 10, repeats: int = 30, min_seconds: float = 1.0,
                    max_seconds: float = 60.0) -> Latency:
    """Measure per-call latency of a model (torch eager) or an ONNX file / model (runtime
    "onnxruntime" or "openvino"; a model is exported to ONNX first).

    `threads=None` uses torch's current intra-op thread count for both runtimes (set
    explicitly on the ORT session, so the recorded number is the one used).

    >>> lat = measure_latency(torch.nn.Linear(8, 8), torch.randn(4, 8), repeats=5, min_seconds=0, warmup=1)
    >>> lat.runtime, lat.batch_size, lat.repeats >= 5, lat.p50_ms <= lat.p99_ms
    ('torch', 4, True, True)
    """
    if runtime not in RUNTIMES:
        raise InputError(f"runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if threads is not None and threads < 1:
        raise InputError(f"threads: expected a positive integer, got {threads}")
    if warmup < 0 or repeats < 1:
        raise InputError(f"warmup/repeats: expected warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    if isinstance(model_or_onnx_path, torch.nn.Module):
        model_or_onnx_path, args, _ = positional(model_or_onnx_path, example_inputs)
    else:
        args = tuple(tensors_of(example_inputs))
    batch = int(args[0].shape[0]) if args[0].dim() else 1
    n_threads = threads or torch.get_num_threads()
    load = _load_avg()
    is_path = isinstance(model_or_onnx_path, (str, os.PathLike))
    if runtime == "torch":
        if is_path:
            raise InputError(f"{model_or_onnx_path}: an ONNX file runs with runtime='onnxruntime' or 'openvino'")
        model = model_or_onnx_path
        before = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        try:
            with torch.inference_mode():
                queue = _run_queue()
                samples, secs, done = _time(lambda: model(*args), warmup, repeats, min_seconds, max_seconds)
                queue = _max(queue, _run_queue())
        finally:
            torch.set_num_threads(before)
        return _summarise(samples, "torch", n_threads, batch, done, secs, load, queue)

    with tempfile.TemporaryDirectory() as tmp:
        path = model_or_onnx_path if is_path else export_fp32_onnx(model_or_onnx_path, Path(tmp) / "model.onnx", args)
        try:
            run = onnx_runner(path, runtime, n_threads)
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - a bad file is the user's input
            name = "ONNX Runtime" if runtime == "onnxruntime" else "OpenVINO"
            raise InputError(f"{path}: {name} cannot load it ({str(e).strip().splitlines()[0][:160]})") from None
        feed = [a.detach().cpu().numpy() for a in args]
        try:
            run(*feed)
        except Exception as e:  # noqa: BLE001 - wrong number or shape of inputs
            raise InputError(f"{path}: cannot run it on inputs of shape "
                             f"{[list(a.shape) for a in feed]} ({str(e).strip().splitlines()[0][:160]})") from None
        queue = _run_queue()
        samples, secs, done = _time(lambda: run(*feed), warmup, repeats, min_seconds, max_seconds)
        queue = _max(queue, _run_queue())
    return _summarise(samples, runtime, n_threads, batch, done, secs, load, queue)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
