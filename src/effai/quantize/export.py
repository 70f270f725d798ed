"""Deployment: real quantized ONNX files that ONNX Runtime executes.

INT8: the float model is exported, pre-processed (shape inference, graph optimisation that
folds BatchNorm) and quantized with `onnxruntime.quantization.quantize_static` using settings
chosen from the host CPU's instruction set (`ort_int8_settings`):

- AVX512-VNNI / AVX-VNNI / AMX (x86): `vpdpbusd` multiplies unsigned 8-bit activations by signed
  8-bit weights, so activations QUInt8, weights QInt8, per-channel, QOperator format (QLinearConv
  / QLinearMatMul kernels), no reduce_range (VNNI accumulates without the 16-bit saturation);
- AVX2 / AVX512 without VNNI: same types with `reduce_range=True` (7-bit weights, because
  `vpmaddubsw` saturates its 16-bit intermediate sums);
- ARM (dot-product): QInt8/QInt8 QDQ, ORT's default.

The choice was measured (benchmarks/quantize_peers.py): on an AVX512-VNNI host, ORT's default
(QDQ, QInt8 activations) barely beats FP32, U8S8 QOperator per-channel roughly doubles speed.

FP16: every float initializer and op is converted to float16 with float32 inputs/outputs kept
(onnxruntime.transformers.float16); ORT inserts casts for ops it lacks fp16 CPU kernels for.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from effai.errors import InputError


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU (from /proc/cpuinfo; empty set where unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def ort_int8_settings(flags: set[str] | None = None) -> dict:
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


ORT_DEFAULT = {"quant_format": "QDQ", "activation_type": "QInt8", "weight_type": "QInt8",
               "per_channel": False, "reduce_range": False, "reason": "quantize_static defaults"}

_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile", "mse": "MinMax"}


def export_float(model: nn.Module, path, example_inputs, opset: int = 17) -> Path:
    """Export the float model to ONNX (TorchScript exporter, dynamo as fallback)."""
    from effai.profile.latency import export_onnx as _export

    model.eval()
    return Path(_export(model, example_inputs, path, opset=opset))


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


def quantize_onnx_int8(float_path, out_path, calibration, settings: dict | None = None, method: str = "minmax",
                       max_batches: int = 16, batch_size: int = 1) -> Path:
    """Static INT8 quantization of an ONNX file with ORT, with `settings` (default: chosen for this CPU)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from effai.quantize.calibrate import batches

    s = dict(ort_int8_settings() if settings is None else settings)
    xs = batches(calibration, None)
    samples = torch.cat(xs)[: max_batches * batch_size]
    data = [samples[i:i + batch_size].numpy().astype(np.float32) for i in range(0, len(samples), batch_size)]
    import onnx

    name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation; fall back to the raw model
            pre = Path(float_path)
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


def export_onnx(model: nn.Module, path, example_inputs, dtype: str = "int8", calibration=None,
                method: str = "minmax", settings: dict | None = None) -> dict:
    """Write a quantized ONNX model (dtype "int8", "fp16" or "fp32") and return facts about it:
    path, bytes, the float file's bytes, and the ORT settings used.

    >>> import os, tempfile, torch, torch.nn as nn
    >>> m = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 64))
    >>> x = torch.randn(8, 1, 8, 8)
    >>> info = export_onnx(m, os.path.join(tempfile.mkdtemp(), "m.onnx"), x[:1], "int8", calibration=x)
    >>> info["dtype"], info["bytes"] < info["float_bytes"]
    ('int8', True)
    """
    if dtype not in ("int8", "fp16", "fp32"):
        raise InputError(f"dtype must be 'int8', 'fp16' or 'fp32', got {dtype!r}")
    if dtype == "int8" and calibration is None:
        raise InputError("export_onnx: dtype='int8' needs calibration data (a DataLoader or tensors)")
    path = Path(path)
    ex = example_inputs if isinstance(example_inputs, torch.Tensor) else example_inputs[0]
    with tempfile.TemporaryDirectory() as tmp:
        fp = export_float(model, Path(tmp) / "float.onnx", ex)
        float_bytes = os.path.getsize(fp)
        used = None
        if dtype == "int8":
            used = dict(ort_int8_settings() if settings is None else settings)
            quantize_onnx_int8(fp, path, calibration, used, method)
        elif dtype == "fp16":
            to_fp16(fp, path)
        else:
            from effai.fileio import write_atomic

            write_atomic(path, Path(fp).read_bytes())
    return {"path": str(path), "dtype": dtype, "bytes": os.path.getsize(path), "float_bytes": float_bytes,
            "settings": used}
