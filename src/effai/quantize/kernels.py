"""Which runtime kernel runs each number format, so that no float timing carries a low-bit name.

Two views, both typed records:
- `format_kernel(fmt, layer)`: what effai's export gives a format on a CPU (the table below,
  checked against ONNX Runtime 1.32's fused graphs): a real kernel's name, or "timed as fp32,
  labelled" where the format only has its values simulated, or "no kernel: not timed";
- `runtime_kernels(path, runtime)`: what ONNX Runtime actually runs for one file, read from its
  optimized graph (the ops left after its QDQ fusions), grouped into int8 / low-bit / float.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

INT8_OPS = frozenset({"u8", "i8", "QLinearConv", "QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
                      "ConvInteger", "MatMulInteger", "QAttention", "QLinearAdd", "QLinearGlobalAveragePool",
                      "QLinearMul", "QLinearConcat", "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu",
                      "QLinearSoftmax", "QLinearWhere", "NhwcMaxPool"})
LOWBIT_OPS = frozenset({"MatMulNBits", "MatMulBnb4", "u4", "i4"})
FLOAT_OPS = frozenset({"f32", "f16", "bf16", "Conv", "FusedConv", "NchwcConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul",
                       "ConvTranspose"})


@dataclass(frozen=True)
class FormatKernel:
    """How a format runs on this kind of CPU: `kernel` names the runtime kernel that computes in
    the format (None where none does); `timing` says what a latency measured for it means."""

    fmt: str
    layer: str
    runtime: str
    kernel: str | None
    timing: str  # "real kernel" | "timed as fp32, labelled" | "no kernel: not timed"

    @property
    def label(self) -> str:
        """The words to put next to a latency of this format."""
        if self.kernel is not None:
            return f"{self.fmt} on {self.kernel}"
        return f"{self.fmt}: {self.timing}"


_INT8 = "QLinearConv / QGemm (MLAS u8s8 int8 GEMM; VNNI vpdpbusd where present)"
_NBITS = "MatMulNBits (com.microsoft, MLAS {bits}-bit blocked GEMM)"


def format_kernel(fmt: str, layer: str = "Linear", runtime: str = "onnxruntime") -> FormatKernel:
    """The kernel effai's ONNX export gives `fmt` weights in a `layer` ("Linear" or "Conv").

    >>> format_kernel("int4").kernel
    'MatMulNBits (com.microsoft, MLAS 4-bit blocked GEMM)'
    >>> format_kernel("int4", "Conv").timing, format_kernel("fp8_e4m3").label
    ('timed as fp32, labelled', 'fp8_e4m3: no kernel: not timed')
    """
    from effai.errors import InputError

    if layer not in ("Linear", "Conv"):
        raise InputError(f"layer: expected 'Linear' or 'Conv', got {layer!r}")
    if fmt in ("int8", "int8_static"):
        return FormatKernel(fmt, layer, runtime, _INT8, "real kernel")
    if fmt == "fp32":
        return FormatKernel(fmt, layer, runtime, "MLAS SGEMM / NCHWc convolution", "real kernel")
    if fmt == "fp16":
        return FormatKernel(fmt, layer, runtime, "ONNX Runtime fp16 graph (MLAS fp16 where the CPU has it, "
                            "casts to fp32 elsewhere)", "real kernel")
    bits = {"int4": 4, "int2": 2, "ternary": 2, "binary": 2}.get(fmt)
    if bits is not None and layer == "Linear" and runtime == "onnxruntime":
        return FormatKernel(fmt, layer, runtime, _NBITS.format(bits=bits), "real kernel")
    if bits is not None or fmt == "bf16":
        return FormatKernel(fmt, layer, runtime, None, "timed as fp32, labelled")
    return FormatKernel(fmt, layer, runtime, None, "no kernel: not timed")  # fp8 / fp4: no CPU kernel


@dataclass(frozen=True)
class RuntimeKernels:
    """The compute ops ONNX Runtime runs for one file after its graph optimisations."""

    runtime: str
    ops: tuple[tuple[str, int], ...]

    def _count(self, kinds) -> int:  # OpenVINO's "Convolution:u8" counts by its precision
        return sum(n for op, n in self.ops if op in kinds or (":" in op and op.split(":")[1] in kinds))

    @property
    def int8(self) -> int:
        return self._count(INT8_OPS)

    @property
    def lowbit(self) -> int:
        return self._count(LOWBIT_OPS)

    @property
    def fp32(self) -> int:
        return self._count(FLOAT_OPS)

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "ops": dict(self.ops), "int8_ops": self.int8, "lowbit_ops": self.lowbit,
                "float_ops": self.fp32}


def runtime_kernels(path, runtime: str = "onnxruntime") -> RuntimeKernels:
    """The ops of ONNX Runtime's optimized graph for `path` (compute ops only); for OpenVINO, the
    layer types of its compiled model with their runtime precision (e.g. "Convolution:u8").

    >>> import os, tempfile, torch
    >>> from effai.profile.latency import export_fp32_onnx
    >>> f = export_fp32_onnx(torch.nn.Linear(4, 2), os.path.join(tempfile.mkdtemp(), "m.onnx"), torch.randn(1, 4))
    >>> runtime_kernels(f).fp32
    1
    """
    if runtime == "openvino":
        return _openvino_kernels(path)
    import tempfile
    from pathlib import Path

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        nodes = onnx.load(opts.optimized_model_filepath, load_external_data=False).graph.node
        counts = Counter(n.op_type for n in nodes if n.op_type in INT8_OPS | LOWBIT_OPS | FLOAT_OPS)
    return RuntimeKernels(runtime, tuple(sorted(counts.items())))


def _openvino_kernels(path) -> RuntimeKernels:
    from effai.profile.latency import openvino_core

    core = openvino_core()
    compiled = core.compile_model(str(path), "CPU")
    counts: Counter = Counter()
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        kind = rt["layerType"].astype(str)
        if kind in ("Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution"):
            counts[f"{kind}:{rt['runtimePrecision'].astype(str)}"] += 1
    return RuntimeKernels("openvino", tuple(sorted(counts.items())))
