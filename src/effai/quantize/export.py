"""Deployment: real quantized ONNX files that ONNX Runtime or OpenVINO executes, each verified
against the torch model it came from (`effai.quantize.verify`: absolute floor, refused below it).

From effai's own simulation (a model that went through `quantize_`): the file is the graph the
model simulates, with its scales, zero points and codes (`effai.quantize.simulated`), no
calibration. effai's INT8 scheme is the one the fast x86 kernels want (uint8 asymmetric
activations, int8 symmetric per-channel weights: VNNI's u8 x s8 `vpdpbusd`), so ONNX Runtime
fuses the file into QLinearConv/QGemm and OpenVINO into its u8 convolutions. 4-bit (and 2/8-bit)
weight-only Linear layers run on MatMulNBits.

From a float model (the user brings one, with calibration data): the float model is exported,
pre-processed (shape inference, graph optimisation that folds BatchNorm) and quantized with
`onnxruntime.quantization.quantize_static` using settings chosen from the host CPU's
instruction set (`ort_int8_settings`):

- AVX512-VNNI / AVX-VNNI / AMX (x86): `vpdpbusd` multiplies unsigned 8-bit activations by signed
  8-bit weights, so activations QUInt8, weights QInt8, per-channel, QOperator format (QLinearConv
  / QLinearMatMul kernels), no reduce_range (VNNI accumulates without the 16-bit saturation);
- AVX2 / AVX512 without VNNI: same types with `reduce_range=True` (7-bit weights, because
  `vpmaddubsw` saturates its 16-bit intermediate sums);
- ARM (dot-product): QInt8/QInt8 QDQ, ORT's default.

The choice was measured (benchmarks/quantize_peers.py): on an AVX512-VNNI host, ORT's default
(QDQ, QInt8 activations) barely beats FP32, U8S8 QOperator per-channel roughly doubles speed.

`runtime="openvino"` writes QDQ U8/S8 per-channel, which OpenVINO reads as FakeQuantize nodes
and runs with its own INT8 kernels (oneDNN); on the benchmark host that is 10-15% faster than
the same file in ONNX Runtime on MobileNetV2 and ResNet-18.

Which of the few sensible settings is fastest depends on the model as well as the CPU (per-tensor
QLinearConv beats per-channel on MobileNetV2 here, not on ResNet-18), so `tune=True` quantizes
every candidate of `int8_candidates`, runs each on its runtime, and keeps the fastest that clears
an absolute floor (`min_sqnr_db`) and is within `max_sqnr_loss_db` of the CPU-chosen default
(of the most accurate candidate where the default itself is below the floor).

FP16: every float initializer and op is converted to float16 with float32 inputs/outputs kept
(onnxruntime.transformers.float16); ORT inserts casts for ops it lacks fp16 CPU kernels for.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn as nn

from effai.errors import InputError
from effai.quantize.kernels import runtime_kernels


class Int8Settings(TypedDict):
    """ONNX Runtime quantize_static settings (QuantFormat / QuantType member names), with the reason."""

    quant_format: str
    activation_type: str
    weight_type: str
    per_channel: bool
    reduce_range: bool
    reason: str


class CandidateRow(TypedDict):
    """One timed INT8 candidate (or runtime) of `export_onnx`'s `candidates`; None where not measured."""

    runtime: str
    settings: str
    sqnr_db: float | None
    bytes: int | None
    latency_ms: float | None
    chosen: bool
    error: str | None


class ExportInfo(TypedDict):
    """What `export_onnx` returns (and `effai export --json` prints); a dict so that it is its JSON."""

    path: str
    dtype: str
    runtime: str
    settings: Int8Settings | None
    candidates: list[CandidateRow] | None
    float_latency_ms: float | None
    source: str
    layers: list[dict[str, Any]] | None
    bytes: int
    float_bytes: int | None
    verification: dict[str, Any]
    kernels: dict[str, Any]


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU (from /proc/cpuinfo; empty set where unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def ort_int8_settings(flags: set[str] | None = None) -> Int8Settings:
    """ORT quantize_static settings for this CPU, with the reason.

    >>> ort_int8_settings({"avx2", "avx512f", "avx512_vnni"})["activation_type"]
    'QUInt8'
    >>> ort_int8_settings({"avx2"})["reduce_range"]
    True
    >>> ort_int8_settings({"asimddp"})["quant_format"]
    'QDQ'
    """
    flags = cpu_flags() if flags is None else set(flags)
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    x86 = bool(flags & {"avx2", "avx512f", "sse4_2", "avx"})
    if vnni:
        return {"quant_format": "QOperator", "activation_type": "QUInt8", "weight_type": "QInt8",
                "per_channel": True, "reduce_range": False,
                "reason": "x86 with VNNI: u8 x s8 dot products (vpdpbusd), QLinearConv kernels"}
    if x86:
        return {"quant_format": "QOperator", "activation_type": "QUInt8", "weight_type": "QInt8",
                "per_channel": True, "reduce_range": True,
                "reason": "x86 without VNNI: u8 x s8 via vpmaddubsw, 7-bit weights avoid 16-bit saturation"}
    return {"quant_format": "QDQ", "activation_type": "QInt8", "weight_type": "QInt8",
            "per_channel": True, "reduce_range": False, "reason": "non-x86: ORT's default S8S8 QDQ"}


ORT_DEFAULT: Int8Settings = {"quant_format": "QDQ", "activation_type": "QInt8", "weight_type": "QInt8",
               "per_channel": False, "reduce_range": False, "reason": "quantize_static defaults"}

# ORT's calibrators; it has no MSE search (quantize_'s "mse" is effai's own, on the torch side)
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}

RUNTIMES = ("onnxruntime", "openvino")

OPENVINO_INT8: Int8Settings = {"quant_format": "QDQ", "activation_type": "QUInt8", "weight_type": "QInt8",
                 "per_channel": True, "reduce_range": False,
                 "reason": "OpenVINO reads QDQ pairs as FakeQuantize and runs its INT8 kernels; u8 asymmetric "
                           "activations measured faster than s8 symmetric"}


def int8_candidates(runtime: str = "onnxruntime", flags: set[str] | None = None) -> list[Int8Settings]:
    """The INT8 settings worth timing for `runtime` on this CPU, the CPU-chosen default first.

    >>> [s["per_channel"] for s in int8_candidates("onnxruntime", {"avx512_vnni", "avx2"})]
    [True, False, True]
    >>> [s["quant_format"] for s in int8_candidates("onnxruntime", {"avx512_vnni", "avx2"})]
    ['QOperator', 'QOperator', 'QDQ']
    >>> int8_candidates("openvino")[0]["quant_format"]
    'QDQ'
    """
    if runtime == "openvino":
        return [OPENVINO_INT8.copy()]
    if runtime != "onnxruntime":
        raise InputError(f"runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    first = ort_int8_settings(flags)
    if first["quant_format"] == "QOperator":  # x86: per-tensor and QDQ can win on some models
        return [first,
                {**first, "per_channel": False,
                 "reason": first["reason"] + "; per-tensor weights (one requantisation scale per layer)"},
                {**first, "quant_format": "QDQ", "reason": first["reason"] + "; QDQ graph fused by ORT"}]
    return [first, {**first, "activation_type": "QUInt8", "reason": "u8 activations x s8 weights"}]


def settings_label(s: Int8Settings) -> str:
    """A short name for INT8 settings: format, activation/weight types, pc = per-channel, rr = reduce_range.

    >>> settings_label(ORT_DEFAULT)
    'QDQ Int8/Int8'
    """
    return (f"{s['quant_format']} {s['activation_type'][1:]}/{s['weight_type'][1:]}"
            f"{' pc' if s['per_channel'] else ''}{' rr' if s['reduce_range'] else ''}")


def export_float(model: nn.Module, path, example_inputs, opset: int = 17) -> Path:
    """Export the float model to ONNX (TorchScript exporter, dynamo as fallback)."""
    from effai.profile.latency import export_fp32_onnx

    model.eval()
    return Path(export_fp32_onnx(model, path, example_inputs, opset=opset))


class _Reader:
    def __init__(self, name: str, batches: list[np.ndarray]):
        self.name, self.batches, self.i = name, batches, 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: self.batches[self.i - 1]}

    def rewind(self):
        self.i = 0


def preprocess_onnx(float_path, out_path) -> Path:
    """ORT's pre-processing for quantization (shape inference, graph optimisation that folds
    BatchNorm) into `out_path`; the float file itself where it fails (it is an optimisation)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(float_path), str(out_path), skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001 - fall back to the raw model
        return Path(float_path)
    return Path(out_path)


def quantize_onnx_int8(float_path, out_path, calibration, settings: Int8Settings | None = None,
                       method: str = "minmax", max_batches: int = 16, batch_size: int = 1, preprocessed: bool = False) -> Path:
    """Static INT8 quantization of an ONNX file with ORT, with `settings` (default: chosen for this
    CPU); `preprocessed=True` says `float_path` already went through `preprocess_onnx`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from effai.quantize.calibrate import batches

    s = ort_int8_settings() if settings is None else settings
    xs = batches(calibration, None)
    samples = torch.cat(xs)[: max_batches * batch_size]
    data = [samples[i:i + batch_size].numpy().astype(np.float32) for i in range(0, len(samples), batch_size)]
    import onnx

    name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(float_path) if preprocessed else preprocess_onnx(float_path, Path(tmp) / "pre.onnx")
        tmp_out = Path(tmp) / "q.onnx"
        quantize_static(
            str(pre), str(tmp_out), _Reader(name, data),
            quant_format=getattr(QuantFormat, s["quant_format"]),
            activation_type=getattr(QuantType, s["activation_type"]),
            weight_type=getattr(QuantType, s["weight_type"]),
            per_channel=bool(s["per_channel"]), reduce_range=bool(s["reduce_range"]),
            calibrate_method=getattr(CalibrationMethod, _METHODS[method]),
        )
        from effai.fileio import write_atomic

        write_atomic(out_path, tmp_out.read_bytes())
    return out_path


def to_fp16(float_path, out_path) -> Path:
    """Convert an fp32 ONNX file to fp16 weights and ops (fp32 inputs/outputs)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    m = onnx.load(str(float_path))
    m16 = convert_float_to_float16(m, keep_io_types=True)
    from effai.fileio import write_atomic

    write_atomic(out_path, m16.SerializeToString())
    return Path(out_path)


def _tune_int8(float_path: Path, out_dir: Path, calibration, candidates: list[tuple[str, Int8Settings]],
               method: str, example: np.ndarray, threads: int, max_sqnr_loss_db: float,
               min_sqnr_db: float) -> tuple[list[tuple[int, Path]], list[CandidateRow], float]:
    """Quantize each (runtime, settings) candidate into `out_dir`, measure its output SQNR against
    the float model on up to 8 calibration inputs and its latency on `example` (interleaved
    rounds, the float model on ONNX Runtime timed alongside), and return the file of the fastest
    candidate that clears an absolute floor: at least `min_sqnr_db`, and at most
    `max_sqnr_loss_db` below the CPU-chosen default (the first candidate) if that one clears the
    floor, else below the most accurate candidate (a broken default never sets the bar): returns
    the (index, file) of those, fastest first, one row per candidate, and the float model's latency."""
    from effai.numerics import sqnr_db
    from effai.profile.latency import interleaved, onnx_runner
    from effai.quantize.calibrate import batches

    inputs = [x[None].numpy().astype(np.float32) for x in torch.cat(batches(calibration, None))[:8]]
    reference = onnx_runner(float_path, "onnxruntime", threads)
    ref = np.concatenate([reference(x)[0] for x in inputs])
    pre = preprocess_onnx(float_path, out_dir / "pre.onnx")  # once, not once per candidate
    files: dict[int, Path] = {}
    sqnr: dict[int, float] = {}  # of the candidates that ran
    calls: dict[int | str, Callable[[], object]] = {}  # "float": the float model, timed alongside
    rows: list[CandidateRow] = []
    for i, (runtime, s) in enumerate(candidates):
        row: CandidateRow = {"runtime": runtime, "settings": settings_label(s), "sqnr_db": None, "bytes": None,
               "latency_ms": None, "chosen": False, "error": None}
        rows.append(row)
        try:  # a runtime may lack an op of this model (OpenVINO and ORT's com.microsoft ops)
            f = quantize_onnx_int8(pre, out_dir / f"candidate{i}.onnx", calibration, s, method,
                                   preprocessed=pre != Path(float_path))
            run = onnx_runner(f, runtime, threads)
            out = np.concatenate([run(x)[0] for x in inputs])
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - recorded in the candidate's row, the others go on
            row["error"] = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
            continue
        files[i], sqnr[i] = f, float(sqnr_db(ref, out))
        calls[i] = partial(run, example)
        row["sqnr_db"], row["bytes"] = sqnr[i], os.path.getsize(f)
    if not files:
        raise InputError("export_onnx: no INT8 candidate could be quantized and run: "
                         + "; ".join(f"{r['runtime']} {r['settings']}: {r['error']}" for r in rows))
    # the accuracy reference is the CPU-chosen default (the first that ran) when it clears the
    # absolute floor, else the most accurate candidate: a broken default never sets the bar
    best = max(sqnr.values())
    default = sqnr[min(sqnr)]
    floor = max(min_sqnr_db, (default if default >= min_sqnr_db else best) - max_sqnr_loss_db)
    eligible = [i for i in files if sqnr[i] >= floor]
    if not eligible:
        from effai.quantize.verify import ExportRefused, onnx_layer_sqnr

        top = max(sqnr, key=sqnr.__getitem__)
        worst = "; ".join(f"{n} {db:.1f} dB" for n, db in onnx_layer_sqnr(float_path, files[top], inputs))
        raise ExportRefused(f"export_onnx: every INT8 candidate is below the {min_sqnr_db:g} dB floor (best "
                            f"{best:.1f} dB, {rows[top]['runtime']} {rows[top]['settings']}); layers losing most: "
                            f"{worst or 'not located'}; nothing written")
    # fresh sessions are slow for their first calls; then 11 rounds of >= 20 ms per candidate
    # (2-3 s for ResNet-18), each candidate judged by its quietest round, because a contention
    # burst on a shared machine can outlast half the rounds and then moves medians by 1.5x
    calls = {i: c for i, c in calls.items() if i in eligible}
    calls["float"] = partial(reference, example)
    ms = interleaved(calls, rounds=11, inner=3, warmup=10, min_round_ms=20.0, statistic="min")
    for i in eligible:
        rows[i]["latency_ms"] = ms[i]
    return [(i, files[i]) for i in sorted(eligible, key=lambda i: ms[i])], rows, ms["float"]


DTYPES = ("int8", "int4", "fp16", "fp32")


def export_onnx(model: nn.Module, path, example_inputs, dtype: str | None = None, calibration=None,
                method: str = "minmax", settings: Int8Settings | None = None, runtime: str = "onnxruntime",
                tune: bool = False, max_sqnr_loss_db: float = 1.0, threads: int = 1, verify_inputs=None,
                min_sqnr_db: float | None = None, min_agreement: float | None = None,
                mode: str | None = None) -> ExportInfo:
    """Write a deployable ONNX model, verified against its source, and return facts about it.

    - A model from `quantize_` (any method: static INT8 with any calibration, QAT, mixed
      precision, weight-only) is written as the graph it simulates, with its own scales, zero
      points and codes (`effai.quantize.simulated`); no calibration data is needed. `dtype` may
      be left out (or name the model's one weight format).
    - A float model: `dtype` "int8" (the default; ONNX Runtime's quantize_static calibrated on
      `calibration`, settings from the CPU flags), "int4" (Linear weights in 4 bits, per group of
      32 where it divides the width, run by MatMulNBits; convolutions stay fp32), "fp16", "fp32".
    - `runtime`: "onnxruntime", "openvino" (needs `effai[openvino]`) or "auto": time every
      installed runtime's candidates and keep the fastest that passes the gate.
    - `settings` / `tune` / `max_sqnr_loss_db`: ORT quantize_static settings for float INT8
      (default `int8_candidates(runtime)[0]`); `tune=True` times every candidate and keeps the
      fastest whose SQNR against the float model is at least `min_sqnr_db` and within
      `max_sqnr_loss_db` of the CPU-chosen default's (of the best candidate's where the default
      is below `min_sqnr_db`).
    - `mode="dynamic"` (or dtype "int8-dynamic"): dynamic INT8, int8 weights per channel and
      activations quantized per call (no calibration), the graph ONNX Runtime runs as
      DynamicQuantizeMatMul; from a float model (every Linear quantized by effai) or one
      quantized with Int8DynamicConfig. Models with several inputs (token ids + attention mask,
      a dict of inputs) keep every input, with batch and sequence dynamic
      (`effai.quantize.transformer_export`).
    - The gate: the written file is loaded in its runtime and run on `verify_inputs` (default
      `example_inputs`, one row at a time) against the torch model it came from; below
      `min_sqnr_db` (20 dB) or `min_agreement` (99% top-1) it raises ExportRefused (an
      InputError) naming the layers that lose most, and nothing is written; so does a file the
      runtime cannot load. `verification` in the result says what was measured.

    >>> import os, tempfile, torch, torch.nn as nn
    >>> from effai.quantize import quantize_, Int8StaticConfig
    >>> m = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 64)).eval()
    >>> x = torch.randn(8, 1, 8, 8)
    >>> q = quantize_(m, Int8StaticConfig(calibration=x))
    >>> info = export_onnx(q, os.path.join(tempfile.mkdtemp(), "m.onnx"), x)
    >>> info["dtype"], info["source"], info["verification"]["passed"], info["verification"]["sqnr_db"] > 35
    ('int8', 'quantize_ simulation', True, True)
    """
    from effai.quantize.simulated import is_quantized
    from effai.quantize.verify import MIN_AGREEMENT, MIN_SQNR_DB

    gate = (MIN_SQNR_DB if min_sqnr_db is None else float(min_sqnr_db),
            MIN_AGREEMENT if min_agreement is None else float(min_agreement))
    if not 0 <= gate[1] <= 1:
        raise InputError(f"min_agreement: expected a fraction in [0, 1], got {gate[1]}")
    if runtime not in (*RUNTIMES, "auto"):
        raise InputError(f"runtime: expected one of {', '.join(RUNTIMES)} or 'auto', got {runtime!r}")
    if max_sqnr_loss_db < 0 or threads < 1:
        raise InputError(f"export_onnx: expected max_sqnr_loss_db >= 0 and threads >= 1, got {max_sqnr_loss_db}, {threads}")
    if runtime == "openvino":
        from effai.profile.latency import openvino_core

        openvino_core()  # fail early, with the install hint, if OpenVINO is missing
    if _simulation_keeps_inputs(model, example_inputs, mode):  # several inputs into convolutions
        return _export_simulated(model, Path(path), example_inputs, dtype, runtime, threads,
                                 example_inputs if verify_inputs is None else verify_inputs, gate)
    from effai.quantize import transformer_export

    if transformer_export.handles(model, example_inputs, dtype, mode):  # dynamic INT8, several inputs
        return transformer_export.export(model, Path(path), example_inputs, dtype, mode, runtime, threads,
                                         verify_inputs, gate, calibration, method)  # type: ignore[return-value]
    ex = example_inputs if isinstance(example_inputs, torch.Tensor) else example_inputs[0]
    check = verify_inputs if verify_inputs is not None else ex
    if is_quantized(model) or dtype == "int4":
        return _export_simulated(model, Path(path), ex, dtype, runtime, threads, check, gate)
    dtype = "int8" if dtype is None else dtype
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if runtime == "auto" and (dtype != "int8" or settings is not None):
        raise InputError("runtime='auto' chooses INT8 settings by measurement: use it with dtype='int8' and no settings")
    if dtype == "int8" and calibration is None:
        raise InputError("export_onnx: dtype='int8' of a float model needs calibration data (a DataLoader or "
                         "tensors), or quantize_ it first and export the result (no data needed)")
    if method not in _METHODS:
        raise InputError(f"method: expected one of {', '.join(_METHODS)}, got {method!r}"
                         + ("; MSE calibration is effai's own: quantize_(model, Int8StaticConfig(method='mse')) "
                            "and export the result" if method == "mse" else ""))
    return _export_float(model, Path(path), ex, dtype, calibration, method, settings, runtime, tune,
                         max_sqnr_loss_db, threads, check, gate)


def _export_float(model, path: Path, ex, dtype, calibration, method, settings, runtime, tune, max_sqnr_loss_db,
                  threads, check, gate) -> ExportInfo:
    """The float model exported, then quantized by ONNX Runtime (INT8) or converted (fp16)."""
    from effai.fileio import write_atomic
    from effai.quantize import verify

    rows: list[CandidateRow] | None = None
    float_ms: float | None = None
    # Exported at batch 1, as deployed and as calibration feeds it: a larger example batch fixed
    # the file's batch, and ONNX Runtime then refused the calibration rows (a raw ORT error).
    ex = ex[:1]
    with tempfile.TemporaryDirectory() as tmp:
        fp = export_float(model, Path(tmp) / "float.onnx", ex)
        float_bytes = os.path.getsize(fp)
        out = Path(tmp) / "out.onnx"
        candidates: list[tuple[str, Int8Settings | None]]
        if dtype == "int8":
            runtimes = [runtime] if runtime != "auto" else [r for r in RUNTIMES if _installed(r)]
            int8 = ([(runtime, settings.copy())] if settings is not None
                    else [(r, s) for r in runtimes for s in int8_candidates(r)])
            candidates = list(int8)
            if tune or runtime == "auto":
                files, rows, float_ms = _tune_int8(fp, Path(tmp), calibration, int8, method,
                                                   ex.detach().cpu().numpy().astype(np.float32), threads,
                                                   max_sqnr_loss_db, gate[0])
            else:
                quantize_onnx_int8(fp, out, calibration, int8[0][1], method)
                files = [(0, out)]
        else:
            files, candidates = [(0, to_fp16(fp, out) if dtype == "fp16" else fp)], [(runtime, None)]
        inputs = verify.rows(check, len(ex))
        reference = verify.torch_outputs(model, inputs)
        for i, out in files:  # fastest first: the first that passes the gate on held-out inputs is kept
            run = verify.load(out, candidates[i][0], threads)
            v = verify.compare(reference, verify.run_file(run, inputs), candidates[i][0], *gate)
            if v.passed:
                break
        if not v.passed:
            v = replace(v, worst_layers=verify.onnx_layer_sqnr(fp, files[0][1], inputs))
            raise verify.refusal(v, dtype)
        chosen_runtime, chosen_settings = candidates[i]
        if rows:
            rows[i]["chosen"] = True
        write_atomic(path, Path(out).read_bytes())
    return {"path": str(path), "dtype": dtype, "runtime": chosen_runtime, "settings": chosen_settings,
            "candidates": rows, "float_latency_ms": float_ms, "source": "float model", "layers": None,
            "float_bytes": float_bytes, "bytes": os.path.getsize(path), "verification": v.to_dict(),
            "kernels": runtime_kernels(path, chosen_runtime).to_dict()}


def _int4_linear(model: nn.Module) -> nn.Module:
    """Linear weights in int4 (per group of 32 where it divides the width, else per channel): the
    layers MatMulNBits runs; convolutions stay fp32 (no int4 convolution kernel on CPU)."""
    import copy

    from effai.quantize.config import WeightOnlyConfig
    from effai.quantize.core import quantize_

    m = copy.deepcopy(model).eval()
    linear = {n: mod for n, mod in m.named_modules() if isinstance(mod, nn.Linear)}
    lin = set(linear)
    grouped = {n for n, mod in linear.items() if mod.in_features % 32 == 0}
    if grouped:
        quantize_(m, WeightOnlyConfig(bits=4, group_size=32), filter_fn=lambda mod, n: n in grouped)
    if lin - grouped:
        quantize_(m, WeightOnlyConfig(bits=4), filter_fn=lambda mod, n: n in lin - grouped)
    if not lin:
        raise InputError("export_onnx: dtype='int4' quantizes Linear layers (MatMulNBits); the model has none")
    return m


def _export_simulated(model: nn.Module, path: Path, example_inputs, dtype, runtime, threads, check,
                      gate) -> ExportInfo:
    """A quantize_-d model (or a float one at dtype='int4') written as the graph it simulates,
    every input kept, checked on each runtime asked for, the fastest passing one kept."""
    from effai.fileio import write_atomic
    from effai.profile.inputs import as_call, tensors_of
    from effai.quantize import verify
    from effai.quantize.simulated import simulated_onnx

    source = "quantize_ simulation"
    if dtype == "int4" and not _quantized(model):
        model, source = _int4_linear(model), "float model, Linear weights quantized to int4 by effai"
    from effai.quantize.core import QuantLayer

    formats = sorted({m.fmt for m in model.modules() if isinstance(m, QuantLayer)})
    if dtype is not None and formats != [dtype]:
        raise InputError(f"dtype={dtype!r}: the model is quantized already (formats: {', '.join(formats)}); "
                         "leave dtype out to export it as simulated")
    proto, layers = simulated_onnx(model, example_inputs)
    data = proto.SerializeToString()
    names = list(as_call(example_inputs)[1]) or None  # a dict of inputs: the model takes them by name
    inputs = verify.rows(check, len(tensors_of(example_inputs)[0]))
    reference = verify.torch_outputs(model, inputs, names)
    runtimes = [runtime] if runtime != "auto" else [r for r in RUNTIMES if _installed(r)]
    checked: dict[str, tuple[Callable[..., Any], verify.Verification]] = {}
    rows: list[CandidateRow] = []
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "model.onnx"
        f.write_bytes(data)
        for r in runtimes:
            row: CandidateRow = {"runtime": r, "settings": "as simulated", "sqnr_db": None, "bytes": len(data),
                   "latency_ms": None, "chosen": False, "error": None}
            rows.append(row)
            try:
                run = verify.load(f, r, threads)
            except verify.ExportRefused as e:
                if runtime != "auto":
                    raise
                row["error"] = str(e)[:200]
                continue
            v = verify.compare(reference, verify.run_file(run, inputs), r, *gate)
            row["sqnr_db"] = v.sqnr_db
            if v.passed:
                checked[r] = (run, v)
            elif runtime != "auto":
                v = replace(v, worst_layers=verify.simulated_layer_sqnr(model, proto, layers, inputs, names=names))
                raise verify.refusal(v, "exported")
        if not checked:
            v = replace(v, worst_layers=verify.simulated_layer_sqnr(model, proto, layers, inputs, names=names))
            raise verify.refusal(v, "exported")
        chosen = next(iter(checked))
        if len(checked) > 1:
            from effai.profile.latency import interleaved

            x = inputs[0] if isinstance(inputs[0], tuple) else (inputs[0],)
            ms = interleaved({r: partial(run, *x) for r, (run, _) in checked.items()}, rounds=11, inner=3,
                             warmup=10, min_round_ms=20.0, statistic="min")
            chosen = min(ms, key=ms.__getitem__)
            for row in rows:
                row["latency_ms"] = ms.get(row["runtime"])
        for row in rows:
            row["chosen"] = row["runtime"] == chosen
        write_atomic(path, data)
    return {"path": str(path), "dtype": formats[0] if len(formats) == 1 else "mixed", "runtime": chosen,
            "settings": None, "candidates": rows if runtime == "auto" else None, "float_latency_ms": None,
            "source": source, "bytes": os.path.getsize(path), "float_bytes": None,
            "verification": checked[chosen][1].to_dict(), "layers": [asdict(layer) for layer in layers],
            "kernels": runtime_kernels(path, chosen).to_dict()}


def _simulation_keeps_inputs(model: nn.Module, example_inputs, mode: str | None) -> bool:
    """A quantize_-d model with several float inputs and quantized convolutions (two images, say),
    no attention and no quantized embedding: the simulation export, which keeps every input
    (`transformer_export` takes the other several-input models: Linear layers only)."""
    from effai.profile.inputs import tensors_of
    from effai.quantize.core import QuantLayer
    from effai.quantize.transformer_export import has_attention

    if mode is not None or isinstance(example_inputs, torch.Tensor) or not _quantized(model):
        return False
    layers = [m.layer for m in model.modules() if isinstance(m, QuantLayer)]
    return (all(t.is_floating_point() for t in tensors_of(example_inputs)) and not has_attention(model)
            and not any(isinstance(m, nn.Embedding) for m in layers)
            and any(isinstance(m, nn.modules.conv._ConvNd) for m in layers))


def _quantized(model) -> bool:
    from effai.quantize.simulated import is_quantized

    return is_quantized(model)


def _installed(runtime: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(runtime) is not None
