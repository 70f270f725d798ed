"""Quantized ONNX files of models with several inputs (token ids + attention mask, dicts of
inputs): every input kept, batch and sequence axes dynamic, each quantized Linear run by the
ONNX Runtime kernel its format has.

The float twin of the quantized model (every QuantLayer replaced by its Linear holding the
weight the codes represent) is exported with `export_fp32_onnx(..., dynamic=True)`; each
MatMul/Gemm whose weight equals a QuantLayer's dequantized weight (matched by value, so no
marker has to survive the exporter's common-subexpression elimination of Q, K and V reading the
same hidden states) is rewritten with that layer's own codes and scales:

- dynamic INT8 (Int8DynamicConfig): `DynamicQuantizeLinear` of the input (once per input
  tensor: Q, K and V share it), `MatMulInteger` with the int8 codes and a zero point per output
  channel, `Cast`, and one `Mul` by input scale x weight scales. This is the graph ONNX Runtime's
  own `quantize_dynamic` writes; ORT fuses it into `DynamicQuantizeMatMul` /
  `MatMulIntegerToFloat`. effai's dynamic rounding (range from each call, 0 exact, 255 steps) is
  `DynamicQuantizeLinear`'s, so the file computes what the torch model computes;
- weight-only 8/4/2-bit Linear layers: `MatMulNBits` where the codes fit its blocks, else int8
  codes with a per-channel `DequantizeLinear` (effai.quantize.simulated's rewrites);
- a QuantLayer that its parent reads instead of calling (nn.MultiheadAttention's out_proj) keeps
  float activations in torch, so its file weight is DequantizeLinear'd codes with float inputs.

- integer embedding tables (EmbeddingConfig): int8 codes gathered and multiplied by the row's
  scale, or 4-bit codes in `GatherBlockQuantized` (com.microsoft).

A float model in `mode="dynamic"` is quantized first with `Int8DynamicConfig()` (every Linear and
GPT-2 Conv1D) and `EmbeddingConfig(bits=8)` (the tables, as ORT's quantize_dynamic stores them),
then written the same way, and verified against the float model. Every file passes the verification gate (`effai.quantize.verify`).
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from effai.errors import InputError
from effai.quantize.core import QuantLayer, convert_, set_module
from effai.quantize.simulated import LayerExport, _codes, _drop_unused, _Graph, _rewrite_weight

MODES = ("static", "dynamic")


def single_tensor(example_inputs) -> bool:
    return isinstance(example_inputs, torch.Tensor)


def handles(model: nn.Module, example_inputs, dtype: str | None, mode: str | None) -> bool:
    """Whether `export_onnx` sends this export here: dynamic INT8, several (or named) inputs, integer
    embeddings, INT8 of a token model, or an int4/quantized model with attention layers (Q, K and V read one tensor, and
    nn.MultiheadAttention reads its out_proj's weight without calling it: the marker-based
    simulation export cannot place those layers)."""
    from effai.quantize.simulated import is_quantized

    if mode is not None and mode not in MODES:
        raise InputError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "dynamic" or dtype == "int8-dynamic":
        return True
    if not single_tensor(example_inputs) or any(
            isinstance(m, QuantLayer) and isinstance(m.layer, nn.Embedding) for m in model.modules()):
        return True
    if not example_inputs.is_floating_point() and (is_quantized(model) or dtype in (None, "int8", "int4")):
        return True  # token ids: ORT's quantize_static feeds float calibration data; effai calibrates in torch
    return has_attention(model) and (dtype == "int4" or is_quantized(model))


def has_attention(model: nn.Module) -> bool:
    """nn.MultiheadAttention or a Hugging Face transformers layer anywhere in the model."""
    return any(isinstance(m, nn.MultiheadAttention) or type(m).__module__.startswith("transformers.")
               for m in model.modules())


def _width(module: Any) -> int | None:
    """The input width of a Linear or a Hugging Face Conv1D (GPT-2), None for other modules."""
    from effai.quantize.core import _is_hf_conv1d

    if isinstance(module, nn.Linear) and not isinstance(module, QuantLayer):
        return module.in_features
    return int(module.weight.shape[0]) if _is_hf_conv1d(module) else None


def _plain_twin(model: nn.Module) -> nn.Module:
    """The model with every QuantLayer replaced by its float layer holding the dequantized weight."""
    twin = convert_(copy.deepcopy(model)).eval()
    for name, ql in [(n, m) for n, m in twin.named_modules() if isinstance(m, QuantLayer)]:
        layer: Any = copy.deepcopy(ql.layer)
        layer.weight = nn.Parameter(ql.dequantized_weight().reshape(ql.weight_shape))
        if getattr(layer, "bias", None) is not None:
            bias = layer.bias.detach().float()
            layer._buffers.pop("bias", None)
            layer.bias = nn.Parameter(bias)
        set_module(twin, name, layer)
    return twin


def _called_layers(model: nn.Module, example_inputs) -> set[str]:
    """The QuantLayers whose forward runs (a parent may read `.weight` instead of calling it)."""
    from effai.profile.inputs import as_call

    called: set[str] = set()
    hooks = [m.register_forward_hook(lambda mod, a, y, _n=n: called.add(_n))
             for n, m in model.named_modules() if isinstance(m, QuantLayer)]
    args, kwargs = as_call(example_inputs)
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return called


def _check_formats(model: nn.Module) -> None:
    for name, ql in model.named_modules():
        if not isinstance(ql, QuantLayer):
            continue
        mode = getattr(ql.act, "mode", None)
        if isinstance(ql.layer, nn.Embedding) and ql.fmt in ("int8", "int4") and mode is None:
            continue
        if isinstance(ql.layer, nn.Linear) and (mode in ("dynamic", "static") and ql.fmt == "int8" or (
                mode is None and ql.fmt in ("int8", "int4", "int2", "ternary", "binary"))):
            continue
        what = f"{ql.fmt} weights, {mode or 'float'} activations, {type(ql.layer).__name__}"
        raise InputError(f"export_onnx: layer {name!r} ({what}): a model with several inputs is written with "
                         "INT8 (dynamic or static) or weight-only integer Linear layers; quantize it with "
                         "Int8DynamicConfig, Int8StaticConfig or WeightOnlyConfig")


def quantized_transformer_onnx(model: nn.Module, example_inputs, opset: int = 17):
    """The ONNX model computing what the quantized `model` computes, every input kept and batch /
    sequence dynamic, and a `LayerExport` per rewritten layer (graph order).

    >>> import torch, torch.nn as nn
    >>> from effai.quantize import quantize_, Int8DynamicConfig
    >>> m = quantize_(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval(), Int8DynamicConfig())
    >>> proto, layers = quantized_transformer_onnx(m, torch.randn(1, 8))
    >>> [(l.name, l.op) for l in layers]
    [('0', 'MatMulInteger'), ('2', 'MatMulInteger')]
    """
    import onnx

    from effai.profile.latency import export_fp32_onnx

    _check_formats(model)
    called = _called_layers(model, example_inputs)
    by_value: dict[tuple, tuple[str, QuantLayer]] = {}
    for name, ql in model.named_modules():
        if isinstance(ql, QuantLayer):
            w = ql.dequantized_weight().reshape(ql.weight_shape).numpy().astype(np.float32)
            by_value.setdefault(_key(w, isinstance(ql.layer, nn.Embedding)), (name, ql))
    with tempfile.TemporaryDirectory() as tmp:
        path = export_fp32_onnx(_plain_twin(model), Path(tmp) / "twin.onnx", example_inputs, opset=opset, dynamic=True)
        proto = onnx.load(str(path))
    g = _Graph(proto)
    shared: dict[str, tuple[str, str, str]] = {}  # input tensor -> its DynamicQuantizeLinear outputs
    out: list[LayerExport] = []
    for node in [n for n in g.g.node if n.op_type in ("MatMul", "Gemm", "Gather")]:
        found = _layer_of(g, node, by_value)
        if found is None:
            continue
        name, ql = found
        if node.op_type == "Gather":
            out.append(_embedding_gather(g, node, ql, name))
            continue
        mode = getattr(ql.act, "mode", None) if name in called else None
        if mode == "dynamic":
            out.append(_dynamic_matmul(g, node, ql, name, shared))
        elif mode == "static":
            out.append(_static_matmul(g, node, ql, name))
        else:
            weights, op = _rewrite_weight(g, node, ql, name, "float")
            out.append(LayerExport(name, ql.fmt, "float", weights, op, node.output[0]))
    lost = sorted(called - {layer.name for layer in out})
    if lost:  # the exporter fused or transformed their weights: the file holds them as float values
        warnings.warn(f"export_onnx: the weights of {', '.join(lost)} were not found in the exported graph; they "
                      "stay fp32 there (same values, no integer kernel)", stacklevel=3)
    _drop_unused(g)
    if any(layer.op in ("MatMulNBits", "GatherBlockQuantized") for layer in out):
        proto.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return proto, out


def _key(w: np.ndarray, table: bool) -> tuple:
    """Lookup tables and Linear weights apart: GPT-2's tied lm_head and word embeddings hold equal codes."""
    return table, w.shape, np.ascontiguousarray(w).tobytes()


def _layer_of(g: _Graph, node, by_value) -> tuple[str, QuantLayer] | None:
    """The QuantLayer whose weight this MatMul/Gemm multiplies by (its weight, transposed as the op stores it)."""
    from effai.quantize.simulated import _attr

    gather = node.op_type == "Gather"
    try:
        w = g.array(node.input[0 if gather else 1])
    except KeyError:  # not a constant: an activation x activation product (attention), a shape
        return None
    if w.dtype != np.float32 or w.ndim != 2 or (gather and _attr(node, "axis", 0) != 0):
        return None
    as_stored = gather or (node.op_type == "Gemm" and _attr(node, "transB", 0))
    return by_value.get(_key(w if as_stored else w.T, gather))


def _dynamic_matmul(g: _Graph, node, ql: QuantLayer, name: str, shared: dict) -> LayerExport:
    """DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul (-> Add bias), ORT's dynamic INT8 graph."""
    import onnx.helper as oh

    q = _codes(ql)
    assert q is not None  # _check_formats: int8
    x = node.input[0]
    at = list(g.g.node).index(node)
    new = []
    if x not in shared:
        shared[x] = (g.name(f"{name}.input_q"), g.name(f"{name}.input_scale"), g.name(f"{name}.input_zp"))
        new.append(oh.make_node("DynamicQuantizeLinear", [x], list(shared[x]), name=g.name(f"{name}.dql")))
    xq, xs, xz = shared[x]
    codes = g.const(f"{name}.weight_codes", np.ascontiguousarray(q.codes.T, dtype=np.int8))  # (K, N)
    n_out = ql.weight_shape[0]
    scale = np.broadcast_to(q.scale.astype(np.float32).reshape(-1), (n_out,)).copy()
    wz = g.const(f"{name}.weight_zp", np.zeros(n_out, np.int8))
    ws = g.const(f"{name}.weight_scale", scale)
    acc, fl, s = g.name(f"{name}.int32"), g.name(f"{name}.float"), g.name(f"{name}.scale")
    bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else None
    y = g.name(f"{name}.matmul") if bias else node.output[0]
    new += [oh.make_node("MatMulInteger", [xq, codes, xz, wz], [acc], name=g.name(f"{name}.mmi")),
            oh.make_node("Cast", [acc], [fl], to=1),
            oh.make_node("Mul", [xs, ws], [s]),
            oh.make_node("Mul", [fl, s], [y])]
    if bias:
        new.append(oh.make_node("Add", [y, bias], [node.output[0]]))
    g.g.node.remove(node)
    for i, n in enumerate(new):
        g.g.node.insert(at + i, n)
    per = "per tensor" if q.granularity == "tensor" else "per channel"
    return LayerExport(name, ql.fmt, "int8 dynamic", f"int8 codes, {per}, MatMulInteger", "MatMulInteger",
                       node.output[0])


def _embedding_gather(g: _Graph, node, ql: QuantLayer, name: str) -> LayerExport:
    """An integer embedding table: 4-bit codes with a scale per block of a row run by
    GatherBlockQuantized (com.microsoft); otherwise the int8 codes are gathered and multiplied by
    the gathered row scales (Gather, Gather, Cast, Mul)."""
    import onnx
    import onnx.helper as oh

    q = _codes(ql)
    assert q is not None  # _check_formats: int8 / int4
    ids, y = node.input[1], node.output[0]
    rows, width = ql.weight_shape
    block = ql.group_size if q.granularity == "group" else _row_block(width)
    at = list(g.g.node).index(node)
    g.g.node.remove(node)
    if ql.fmt == "int4" and block is not None and block >= 16 and block & (block - 1) == 0 and width % block == 0:
        scales = q.scale.reshape(rows, -1).astype(np.float32)
        if scales.shape[1] != width // block:  # one scale per row, repeated for each block
            scales = np.repeat(scales, width // block, axis=1)
        data = g.name(f"{name}.table_int4")
        t = oh.make_tensor(data, onnx.TensorProto.INT4, (rows, width), q.codes.reshape(-1).astype(np.int8).tolist())
        g.g.initializer.append(t)
        g.inits[data] = t
        s = g.const(f"{name}.table_scales", scales)
        g.g.node.insert(at, oh.make_node("GatherBlockQuantized", [data, ids, s], [y], domain="com.microsoft",
                                         gather_axis=0, quantize_axis=1, block_size=block, name=g.name(name)))
        return LayerExport(name, ql.fmt, "float", f"int4 codes, a scale per {block} values of a row",
                           "GatherBlockQuantized", y)
    if q.granularity == "group":
        raise InputError(f"export_onnx: embedding {name!r}: {ql.fmt} per group of {ql.group_size} needs 4 bits and a "
                         "power-of-two group >= 16 dividing the width (GatherBlockQuantized)")
    codes = g.const(f"{name}.table_codes", np.ascontiguousarray(q.codes, dtype=np.int8))
    scale = g.const(f"{name}.row_scale", np.broadcast_to(q.scale.astype(np.float32).reshape(-1, 1), (rows, 1)).copy())
    c, cf, s = g.name(f"{name}.codes"), g.name(f"{name}.codes_float"), g.name(f"{name}.scale")
    for i, n in enumerate([oh.make_node("Gather", [codes, ids], [c], axis=0),
                           oh.make_node("Gather", [scale, ids], [s], axis=0),
                           oh.make_node("Cast", [c], [cf], to=1),
                           oh.make_node("Mul", [cf, s], [y])]):
        g.g.node.insert(at + i, n)
    return LayerExport(name, ql.fmt, "float", f"{ql.fmt} codes in int8, a scale per token row", "Gather", y)


def _row_block(width: int) -> int | None:
    """The largest power-of-two block (16..256) dividing a row: a per-row scale repeated per block."""
    return next((b for b in (256, 128, 64, 32, 16) if width % b == 0), None)


def _static_matmul(g: _Graph, node, ql: QuantLayer, name: str) -> LayerExport:
    """QuantizeLinear -> DequantizeLinear of the input with the layer's calibrated scale (uint8,
    its zero point + 128), int8 weight codes through DequantizeLinear, the output rounded where the
    simulation rounds it: the QDQ graph ONNX Runtime fuses into its int8 MatMul kernels. LayerNorm,
    Softmax and GELU are no QuantLayers, so they stay float."""
    import onnx.helper as oh

    from effai.quantize.simulated import _output_after_bias, _round_output, _uint8_params

    scale, zp = _uint8_params(ql.act)
    s, z = g.const(f"{name}.input_scale", scale), g.const(f"{name}.input_zp", zp)
    qx, dqx = g.name(f"{name}.input_q"), g.name(f"{name}.input")
    at = list(g.g.node).index(node)
    g.g.node.insert(at, oh.make_node("QuantizeLinear", [node.input[0], s, z], [qx]))
    g.g.node.insert(at + 1, oh.make_node("DequantizeLinear", [qx, s, z], [dqx]))
    node.input[0] = dqx
    output = node.output[0] if node.op_type != "MatMul" else _output_after_bias(g, node.output[0])
    weights, op = _rewrite_weight(g, node, ql, name, "int8 static")
    if ql.out_act is not None:
        output = _round_output(g, output, ql, name)
    return LayerExport(name, ql.fmt, "int8 static", weights, op, output)


# ------------------------------------------------------------------ inputs and the gate
def feed_rows(inputs) -> list[tuple[np.ndarray, ...]]:
    """One tuple of arrays (in the graph's input order) per row of `inputs` (a tensor, a tuple of
    tensors or a dict): batch 1, as deployed; floats as float32, token ids in their integer dtype."""
    from effai.profile.inputs import tensors_of

    ts = [t.detach().cpu() for t in tensors_of(inputs)]
    ts = [t.float() if t.is_floating_point() else t for t in ts]
    n = len(ts[0])
    if any(len(t) != n for t in ts):
        raise InputError(f"verify_inputs: every input needs the same number of rows, got {[len(t) for t in ts]}")
    return [tuple(t[i:i + 1].numpy() for t in ts) for i in range(n)]


def torch_rows(model: nn.Module, inputs, rows: list[tuple[np.ndarray, ...]]) -> np.ndarray:
    """The model's first output (the logits) for each row, one call per row (dynamic ranges
    depend on the batch), on one thread."""
    from effai.profile.inputs import as_call, first_tensor

    args, kwargs = as_call(inputs)
    names = list(kwargs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    outs = []
    try:
        with torch.no_grad():
            for row in rows:
                ts = [torch.from_numpy(a) for a in row]
                o = model(**dict(zip(names, ts, strict=True))) if names else model(*ts)
                outs.append(first_tensor(o).float().numpy())
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(outs)


def _quantized_copy(model: nn.Module, dtype: str | None, dynamic: bool, calibration, method: str):
    """A float model quantized by effai for `dtype` / dynamic mode, and the words saying how."""
    from effai.quantize.config import EmbeddingConfig, Int8DynamicConfig, Int8StaticConfig, WeightOnlyConfig
    from effai.quantize.core import quantize_, select

    q = copy.deepcopy(model).eval()
    with warnings.catch_warnings():  # layers left float (embeddings, norms) are said in the source line
        warnings.simplefilter("ignore")
        if dynamic:  # embeddings in int8 too, as ONNX Runtime's quantize_dynamic stores them
            quantize_(q, Int8DynamicConfig())
            if any(isinstance(m, nn.Embedding) for m in q.modules()):
                quantize_(q, EmbeddingConfig(bits=8))
            return q, "float model, quantized by effai: Linear layers dynamic INT8, embeddings int8 per row"
        if dtype == "int8":
            if calibration is None:
                raise InputError("export_onnx: static INT8 of a model with several inputs needs calibration data (a "
                                 "dict of tensors like the example inputs), or mode='dynamic' (none needed)")
            quantize_(q, Int8StaticConfig(calibration=calibration, method=method))
            return q, f"float model, quantized by effai: Linear layers static INT8 ({method} calibration)"
        # int4: per group of 32 where it divides the width (MatMulNBits' blocks), else per channel
        grouped = [lambda m, n: (_width(m) or 1) % 32 == 0, lambda m, n: _width(m) is not None]
        for cfg, filt in zip((WeightOnlyConfig(bits=4, group_size=32), WeightOnlyConfig(bits=4)), grouped, strict=True):
            if select(q, filt):
                quantize_(q, cfg, filter_fn=filt)
        return q, ("float model, Linear layers quantized by effai to int4 weight-only (per group of 32 where the "
                   "width allows; embeddings float)")


def _check_request(model: nn.Module, dtype: str | None, dynamic: bool) -> None:
    """A quantized model is written as it is: a dtype or mode naming something else is refused."""
    layers = [m for m in model.modules() if isinstance(m, QuantLayer)]
    formats = sorted({m.fmt for m in layers})
    if dtype is not None and dtype.removesuffix("-dynamic") not in formats:
        raise InputError(f"dtype={dtype!r}: the model is quantized already (formats: {', '.join(formats)}); leave "
                         "dtype out to export it as simulated")
    static = sorted({n for n, m in model.named_modules() if isinstance(m, QuantLayer)
                     and getattr(m.act, "mode", None) == "static"})
    if dynamic and static:
        raise InputError(f"mode='dynamic': layers {', '.join(static[:3])} of the model round their inputs with "
                         "calibrated (static) ranges; pass the float model, or quantize it with Int8DynamicConfig")


def _file(model: nn.Module, example_inputs, dtype: str | None, dynamic: bool, calibration, method: str, tmp: Path):
    """(ONNX bytes, LayerExport list, the quantized model or None, source) for the export asked for."""
    from effai.profile.latency import export_fp32_onnx
    from effai.quantize.simulated import is_quantized

    if is_quantized(model):
        _check_request(model, dtype, dynamic)
        proto, layers = quantized_transformer_onnx(model, example_inputs)
        return proto.SerializeToString(), layers, model, "quantize_ simulation"
    if not dynamic and dtype in ("fp32", "fp16"):
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        f = export_fp32_onnx(model, tmp / "fp32.onnx", example_inputs, dynamic=True)
        if dtype == "fp32":
            return f.read_bytes(), [], None, "float model"
        half = convert_float_to_float16(onnx.load(str(f)), keep_io_types=True)  # as export.to_fp16 (no cycle)
        return half.SerializeToString(), [], None, "float model"
    q, source = _quantized_copy(model, dtype, dynamic, calibration, method)
    proto, layers = quantized_transformer_onnx(q, example_inputs)
    return proto.SerializeToString(), layers, q, source


def export(model: nn.Module, path: Path, example_inputs, dtype: str | None, mode: str | None, runtime: str,
           threads: int, verify_inputs, gate: tuple[float, float], calibration=None,
           method: str = "minmax") -> dict[str, Any]:
    """export_onnx for models with several inputs and for dynamic INT8 (see the module doc)."""
    from effai.fileio import write_atomic
    from effai.profile.latency import export_fp32_onnx
    from effai.quantize import verify
    from effai.quantize.kernels import runtime_kernels

    if runtime != "onnxruntime":
        raise InputError(f"export_onnx: dynamic INT8 and several-input files run on ONNX Runtime; got runtime={runtime!r}")
    dynamic = mode == "dynamic" or dtype == "int8-dynamic"
    if dynamic and dtype not in (None, "int8", "int8-dynamic"):
        raise InputError(f"export_onnx: mode='dynamic' is INT8 (dtype='int8'), got dtype={dtype!r}")
    if not dynamic and dtype not in (None, "int8", "int4", "fp16", "fp32"):
        raise InputError(f"dtype must be one of int8, int8-dynamic, int4, fp16, fp32, got {dtype!r}")
    from effai.quantize.simulated import is_quantized

    if dtype is None and not dynamic and not is_quantized(model):
        dtype = "int8"  # export_onnx's default for a float model
    check = verify_inputs if verify_inputs is not None else example_inputs
    rows = feed_rows(check)
    reference = torch_rows(model, check, rows)
    with tempfile.TemporaryDirectory() as tmp:
        data, layers, q, source = _file(model, example_inputs, dtype, dynamic, calibration, method, Path(tmp))
        f = Path(tmp) / "model.onnx"
        f.write_bytes(data)
        run = verify.load(f, runtime, threads)
        v = verify.compare(reference, np.concatenate([run(*row)[0] for row in rows]), runtime, *gate)
        if not v.passed:
            raise verify.refusal(v, "exported")
        twin = model if q is None or q is not model else _plain_twin(model)
        float_bytes = os.path.getsize(export_fp32_onnx(twin, Path(tmp) / "float.onnx", example_inputs, dynamic=True))
        write_atomic(path, data)
    formats = sorted({m.fmt for m in q.modules() if isinstance(m, QuantLayer)}) if q is not None else [dtype or "fp32"]
    return {"path": str(path), "dtype": formats[0] if len(formats) == 1 else "mixed", "runtime": runtime,
            "settings": None, "candidates": None, "float_latency_ms": None, "source": source,
            "layers": [asdict(layer) for layer in layers], "bytes": os.path.getsize(path), "float_bytes": float_bytes,
            "verification": v.to_dict(), "kernels": runtime_kernels(path, runtime).to_dict()}
