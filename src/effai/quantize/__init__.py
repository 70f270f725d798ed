"""effai.quantize: `quantize_(model, config)` with frozen configs, calibration, QAT, mixed
precision and ONNX export.

>>> import torch, torch.nn as nn
>>> from effai.quantize import quantize_, Int8StaticConfig, state_dict_bytes
>>> m = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
>>> before = state_dict_bytes(m)
>>> m = quantize_(m, Int8StaticConfig(calibration=torch.randn(64, 256)))
>>> round(state_dict_bytes(m) / before, 2) < 0.3
True
"""

from effai.quantize import handlers as _handlers  # noqa: F401  (registers the handlers)
from effai.quantize.calibrate import fold_bn_
from effai.quantize.config import (
    BFloat16Config,
    BinaryConfig,
    EmbeddingConfig,
    Float16Config,
    FP4Config,
    FP8Config,
    Int8DynamicConfig,
    Int8StaticConfig,
    MixedPrecisionConfig,
    QATConfig,
    TernaryConfig,
    WeightOnlyConfig,
)
from effai.quantize.core import (
    ActQuant,
    NothingToQuantize,
    QuantLayer,
    convert_,
    quantize_,
    register,
    save,
    state_dict_bytes,
)
from effai.quantize.export import cpu_flags, export_onnx, int8_candidates, ort_int8_settings
from effai.quantize.kernels import FormatKernel, RuntimeKernels, format_kernel, runtime_kernels
from effai.quantize.mixed import choose, mixed_precision, sensitivity
from effai.quantize.simulated import LayerExport
from effai.quantize.verify import ExportRefused, Verification

__all__ = [
    "ActQuant",
    "BFloat16Config",
    "BinaryConfig",
    "EmbeddingConfig",
    "ExportRefused",
    "FP4Config",
    "FP8Config",
    "FormatKernel",
    "Float16Config",
    "Int8DynamicConfig",
    "Int8StaticConfig",
    "LayerExport",
    "MixedPrecisionConfig",
    "NothingToQuantize",
    "QATConfig",
    "QuantLayer",
    "RuntimeKernels",
    "TernaryConfig",
    "Verification",
    "WeightOnlyConfig",
    "choose",
    "convert_",
    "cpu_flags",
    "export_onnx",
    "fold_bn_",
    "format_kernel",
    "int8_candidates",
    "mixed_precision",
    "ort_int8_settings",
    "quantize_",
    "register",
    "runtime_kernels",
    "save",
    "sensitivity",
    "state_dict_bytes",
]
