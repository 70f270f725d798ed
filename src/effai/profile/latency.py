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
    contended: bool = False  # load average above the core count: wall times include waiting for a core

    def to_dict(self) -> dict:
        return asdict(self)


def _as_tuple(example_inputs) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)) and all(isinstance(x, torch.Tensor) for x in example_inputs):
        return tuple(example_inputs)
    raise InputError(f"example_inputs: expected a tensor or a tuple of tensors, got {type(example_inputs).__name__}")


def export_fp32_onnx(model: torch.nn.Module, path: str | os.PathLike, example_inputs, opset: int = 17) -> Path:
    """Export a float model to ONNX at `path` and return the path (the argument order of
    `effai.quantize.export_onnx`, which also quantizes and verifies; this one only exports).

    Uses the TorchScript exporter (`dynamo=False`): in torch 2.13 it is still present,
    about 15x faster than the torch.export-based exporter on small models and handles
    any eager model that traces; if it fails the dynamo exporter is tried.

    >>> import tempfile, os
    >>> p = export_fp32_onnx(torch.nn.Linear(4, 2), os.path.join(tempfile.mkdtemp(), "m.onnx"), torch.randn(1, 4))
    >>> p.suffix, p.stat().st_size > 0
    ('.onnx', True)
    """
    args = _as_tuple(example_inputs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset,
                                  input_names=[f"input{i}" if i else "input" for i in range(len(args))])
            except Exception:  # noqa: BLE001 - fall back to the new exporter
                with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                    torch.onnx.export(model, args, str(path), dynamo=True, external_data=False)
    finally:
        model.train(was_training)
    return path


def export_onnx(model: torch.nn.Module, example_inputs, path: str | os.PathLike, opset: int = 17) -> Path:
    """The old argument order of `export_fp32_onnx`, kept only until `effai.prune.latency` and
    `effai.quantize.export` (being reworked in parallel) call `export_fp32_onnx`; then deleted.
    Not exported from `effai.profile`; do not use in new code."""
    return export_fp32_onnx(model, path, example_inputs, opset)


def ort_session(model: str | os.PathLike | bytes, threads: int):
    """A CPU ONNX Runtime session on an ONNX file (or serialized model bytes): `threads`
    intra-op threads, one inter-op thread (the graph runs in order), warnings silenced."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
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


def interleaved(calls: Mapping[Key, Callable[[], object]], rounds: int = 7, inner: int = 10, warmup: int = 3,
                min_round_ms: float = 0.0, statistic: str = "median") -> dict[Key, float]:
    """Milliseconds per call of each callable, timed side by side.

    Each round calls every callable `inner` times in turn and records its mean; the result is
    the median over `rounds` rounds, so a contention burst that hits one round is discarded
    and hits every candidate alike. `statistic="min"` keeps the fastest round instead: outside
    load only ever adds time, so when a choice must survive bursts that last several rounds,
    the quietest round of each candidate is the fairer comparison. `min_round_ms` raises a fast
    callable's `inner` (from one timed call after warm-up) so that each of its rounds lasts at
    least that long: a sub-millisecond model timed 10 calls at a time measures the clock and
    the scheduler.

    >>> ms = interleaved({"a": lambda: sum(range(100)), "b": lambda: sum(range(10_000))}, rounds=3, inner=2)
    >>> sorted(ms), ms["a"] < ms["b"]
    (['a', 'b'], True)
    """
    if statistic not in ("median", "min"):
        raise InputError(f"interleaved: statistic must be 'median' or 'min', got {statistic!r}")
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
            t0 = time.perf_counter_ns()
            for _ in range(n_calls[k]):
                call()
            per_round[k].append((time.perf_counter_ns() - t0) / 1e6 / n_calls[k])
    reduce = statistics.median if statistic == "median" else min
    return {k: reduce(v) for k, v in per_round.items()}


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _summarise(samples: list[tuple[int, int]], runtime: str, threads: int, batch: int, warmup: int,
               seconds: float, load: float | None) -> Latency:
    ms = np.asarray([w for w, _ in samples], dtype=np.float64) / 1e6
    cpu = np.asarray([c for _, c in samples], dtype=np.float64) / 1e6
    p25, p50, p75, p90, p99 = np.percentile(ms, [25, 50, 75, 90, 99])
    return Latency(runtime=runtime, p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
                   iqr_ms=float(p75 - p25), mean_ms=float(ms.mean()), min_ms=float(ms.min()), threads=threads,
                   batch_size=batch, repeats=len(ms), warmup=warmup,
                   throughput=float(batch / (p50 / 1e3)) if p50 > 0 else float("inf"), seconds=seconds,
                   load_avg=load, cpu_p50_ms=float(np.median(cpu)),
                   contended=load is not None and load > (os.cpu_count() or 1))


def _time(call, warmup: int, repeats: int, min_seconds: float, max_seconds: float) -> tuple[list, float, int]:
    start = time.perf_counter()
    done = 0
    while done < warmup and time.perf_counter() - start < 0.25 * max_seconds:
        call()
        done += 1
    samples: list[tuple[int, int]] = []
    start = time.perf_counter()
    while True:
        c0, t0 = time.process_time_ns(), time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - t0, time.process_time_ns() - c0))
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
    args = _as_tuple(example_inputs)
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
                samples, secs, done = _time(lambda: model(*args), warmup, repeats, min_seconds, max_seconds)
        finally:
            torch.set_num_threads(before)
        return _summarise(samples, "torch", n_threads, batch, done, secs, load)

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
        samples, secs, done = _time(lambda: run(*feed), warmup, repeats, min_seconds, max_seconds)
    return _summarise(samples, runtime, n_threads, batch, done, secs, load)
