"""Counting an ONNX file from its graph: Conv, ConvTranspose, Gemm, MatMul, and the rest.

Shapes come from `onnx.shape_inference` after fixing the inputs' dynamic dimensions to
`input_shape`. MACs and elementwise FLOPs use the same conventions as the torch counter;
an op type not in the tables below is listed in `Profile.uncounted`. Peak activation
memory is liveness over the graph's node order (ONNX nodes are topologically sorted).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from effai.errors import InputError
from effai.profile.energy import Energy, Meter, estimate, precision_for
from effai.profile.memory import peak_from_events
from effai.profile.result import LayerProfile, Profile, Total

_ELEM_COST = {"Relu": 1, "LeakyRelu": 1, "Clip": 1, "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Max": 1,
              "Min": 1, "Neg": 1, "Abs": 1, "Sqrt": 1, "Pow": 1, "Exp": 1, "Log": 1, "Erf": 1, "Tanh": 1,
              "Reciprocal": 1, "Sigmoid": 3, "HardSigmoid": 3, "HardSwish": 4, "Gelu": 5, "Elu": 3,
              "Softplus": 3, "Mish": 6, "Where": 1, "Equal": 1, "Less": 1, "Greater": 1, "Not": 1,
              "BatchNormalization": 2, "LayerNormalization": 7, "GroupNormalization": 7,
              "InstanceNormalization": 7, "Softmax": 5, "LogSoftmax": 5, "PRelu": 1, "Sin": 1, "Cos": 1, "Mod": 1, "IsNaN": 1, "IsInf": 1, "And": 1,
              "Or": 1, "Xor": 1, "GreaterOrEqual": 1, "LessOrEqual": 1, "Floor": 1, "Ceil": 1, "Round": 1,
              "Sign": 1}
_INPUT_COST = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
               "ReduceL2", "ReduceProd", "ArgMax", "ArgMin", "CumSum"}
_ZERO = {"Reshape", "Flatten", "Transpose", "Concat", "Shape", "Gather", "Unsqueeze", "Squeeze", "Constant",
         "Identity", "Slice", "Cast", "Split", "Pad", "Expand", "ConstantOfShape", "Range", "Tile", "Dropout",
         "GatherElements", "ScatterND", "DepthToSpace", "SpaceToDepth", "Resize", "Upsample", "NonZero",
         "TopK", "Size", "QuantizeLinear", "DequantizeLinear", "Trilu", "CastLike"}
_DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2, 17: 1,
                18: 1, 19: 1, 20: 1, 21: 1, 22: 1, 23: 1}


def _fix_input(path, inp, shape) -> None:
    """Set one graph input's dimensions to `shape`, refusing a rank or fixed size that disagrees."""
    dims = inp.type.tensor_type.shape.dim
    want = "x".join(d.dim_param or str(d.dim_value) for d in dims)
    if len(dims) != len(shape) or any(d.dim_value and d.dim_value != s for d, s in zip(dims, shape, strict=False)):
        raise InputError(f"{path}: input {inp.name!r} expected {want}, got "
                         f"{'x'.join(map(str, shape))}")
    for d, s in zip(dims, shape, strict=True):
        d.ClearField("dim_param")
        d.dim_value = int(s)


def _shape_for(inp, input_shape, first: bool):
    """The shape one input gets: its spec by name, else the one shape for every input of its rank."""
    if isinstance(input_shape, dict):
        return input_shape.get(inp.name)
    rank = len(inp.type.tensor_type.shape.dim)
    if first or rank == len(input_shape):
        return tuple(input_shape)
    return None


def _load(path, input_shape):
    import onnx

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - a corrupt file is the user's input
        raise InputError(f"{path}: not a readable ONNX file ({str(e).splitlines()[0][:120]})") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if input_shape is not None:
        if isinstance(input_shape, dict) and set(input_shape) - {i.name for i in inputs}:
            raise InputError(f"{path}: no input named {sorted(set(input_shape) - {i.name for i in inputs})[0]!r}; "
                             f"its inputs are {[i.name for i in inputs]}")
        for k, inp in enumerate(inputs):
            shape = _shape_for(inp, input_shape, k == 0)
            if shape is not None:
                _fix_input(path, inp, shape)
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - count what we can without inferred shapes
        pass
    return model, inputs


def _distinct_weights(inits) -> list:
    """Initializers with each stored weight once: an exporter may keep a tied weight twice, once
    transposed (GPT-2's embedding and its LM head); the copy is not a parameter of its own."""
    from onnx import numpy_helper

    seen: set[tuple] = set()
    out = []
    for init in inits:
        arr = numpy_helper.to_array(init)
        keys = {(arr.shape, arr.tobytes())}
        if arr.ndim == 2 and arr.size >= 1024:
            keys.add((arr.T.shape, np.ascontiguousarray(arr.T).tobytes()))
        if arr.size >= 1024 and keys & seen:
            continue
        seen |= keys
        out.append(init)
    return out


def _shapes(model):
    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            out[vi.name] = (tuple(d.dim_value for d in tt.shape.dim), _DTYPE_BYTES.get(tt.elem_type, 4))
    for init in model.graph.initializer:
        out[init.name] = (tuple(init.dims), _DTYPE_BYTES.get(init.data_type, 4))
    return out


def _runtime_shapes(model, inputs, shapes) -> dict:
    """Shapes that static inference could not settle (a transformer's position ids are sliced
    with computed bounds), read from one ONNX Runtime pass on zero inputs with every
    intermediate tensor exposed as an output. Zero token ids are valid ids for any vocabulary."""
    import onnx

    from effai.profile.latency import ort_session

    missing = [o for n in model.graph.node if n.op_type != "Constant" for o in n.output if o and o not in shapes]
    if not missing:
        return shapes
    feed = {}
    for inp in inputs:
        tt = inp.type.tensor_type
        dims = [d.dim_value for d in tt.shape.dim]
        if not all(dims):
            return shapes  # unknown input size: keep what static inference found
        feed[inp.name] = np.zeros(dims, dtype=onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=o) for o in missing if o not in known)
    try:
        sess = ort_session(probe.SerializeToString(), 1)
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(names, feed)
    except Exception:  # noqa: BLE001 - a graph ORT cannot run: count what static inference found
        return shapes
    out = dict(shapes)
    for n, v in zip(names, values, strict=True):
        if n not in out and isinstance(v, np.ndarray):
            out[n] = (tuple(v.shape), v.dtype.itemsize)
    return out


def _example_feed(path, model, inputs) -> dict:
    """Seeded inputs for timing: floats standard normal, token ids below the vocabulary (the
    smallest table a graph input indexes directly), masks ones."""
    import onnx
    import torch

    from effai.profile.inputs import InputSpec, example_tensors

    tables = {i.name: i.dims[0] for i in model.graph.initializer if len(i.dims) == 2}
    names = {i.name for i in inputs}
    vocab = min((tables[n.input[0]] for n in model.graph.node
                 if n.op_type == "Gather" and n.input[0] in tables and n.input[1] in names), default=100)
    specs = []
    for inp in inputs:
        tt = inp.type.tensor_type
        dims = tuple(d.dim_value for d in tt.shape.dim)
        if not all(dims):
            raise InputError(f"{path}: input {inp.name!r} has dynamic dimensions; pass its shape")
        dtype = str(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        specs.append(InputSpec(inp.name, dims, dtype if dtype in ("int64", "int32", "float16", "bool") else "float32"))
    return example_tensors(specs, torch.nn.Embedding(int(vocab), 1))


def _attr(node, name, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def node_cost(node, shapes) -> tuple[int, int, bool]:
    """(MACs, elementwise FLOPs, counted) for one ONNX node, given known shapes."""
    op = node.op_type
    sh = lambda n: shapes.get(n, (None, 4))[0]  # noqa: E731
    out = sh(node.output[0]) if node.output else None
    if op in _ZERO:
        return 0, 0, True
    if out is None:
        return 0, 0, False
    n_out = math.prod(out)
    if op == "Conv":
        w = sh(node.input[1])
        if w is None:
            return 0, 0, False
        bias = n_out if len(node.input) > 2 and node.input[2] else 0
        return n_out * math.prod(w[1:]), bias, True
    if op == "ConvTranspose":
        w, x = sh(node.input[1]), sh(node.input[0])
        if w is None or x is None:
            return 0, 0, False
        bias = n_out if len(node.input) > 2 and node.input[2] else 0  # weight: (Cin, Cout/groups, *k)
        return math.prod(x) * w[1] * math.prod(w[2:]), bias, True
    if op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        a = sh(node.input[0])
        if a is None:
            return 0, 0, False
        k = a[0] if (op == "Gemm" and _attr(node, "transA", 0)) else a[-1]
        bias = n_out if op == "Gemm" and len(node.input) > 2 and node.input[2] else 0
        return n_out * k, bias, True
    if op in ("MaxPool", "AveragePool", "LpPool"):
        return 0, n_out * math.prod(_attr(node, "kernel_shape", [1])), True
    if op in _INPUT_COST:
        x = sh(node.input[0])
        return 0, math.prod(x) if x else n_out, True
    if op in _ELEM_COST:
        return 0, n_out * _ELEM_COST[op], True
    return 0, 0, False


def _named_shapes(input_shape, batch_size):
    """Specs (`input_ids:1x128:int64,...` or `InputSpec`s) -> {name: shape}; one shape stays as is."""
    from effai.profile.inputs import InputSpec, parse_specs

    if isinstance(input_shape, str):
        input_shape = parse_specs(input_shape, "input_shape")
    if not input_shape or not all(isinstance(s, InputSpec) for s in input_shape):
        return input_shape
    if [s.name for s in input_shape] == ["input"]:
        return input_shape[0].shape
    return {s.name: (batch_size or s.shape[0], *s.shape[1:]) for s in input_shape}


def profile_onnx(path: str | os.PathLike, input_shape=None, batch_size=None, latency=True, threads=1,  # noqa: C901 - the public boundary: validates every argument once, then counts and times
                 warmup=10, repeats=30, min_seconds=1.0, max_seconds=20.0, bits=None, energy=True, name=None,
                 runtime="onnxruntime") -> Profile:
    """Profile an ONNX file: counts from the graph, latency with ONNX Runtime (or `runtime="openvino"`).

    >>> import tempfile, os, torch
    >>> from effai.profile.latency import export_fp32_onnx
    >>> f = export_fp32_onnx(torch.nn.Conv2d(3, 8, 3, padding=1), os.path.join(tempfile.mkdtemp(), "c.onnx"),
    ...                      torch.randn(1, 3, 8, 8))
    >>> p = profile_onnx(f, latency=False)
    >>> p.total.params, p.total.macs, p.layers[0].type
    (224, 13824, 'Conv')
    """
    input_shape = _named_shapes(input_shape, batch_size)
    if input_shape is not None and batch_size is not None and not isinstance(input_shape, dict):
        input_shape = (batch_size, *tuple(input_shape)[1:])
    model, inputs = _load(path, input_shape)
    if input_shape is None and inputs:
        dims = inputs[0].type.tensor_type.shape.dim
        if any(not d.dim_value for d in dims):
            if batch_size is None and any(not d.dim_value for d in list(dims)[1:]):
                raise InputError(f"{path}: input {inputs[0].name!r} has dynamic dimensions; pass --input NxCxHxW")
            input_shape = tuple(d.dim_value or (batch_size or 1) for d in dims)
            model, inputs = _load(path, input_shape)
        else:
            input_shape = tuple(d.dim_value for d in dims)
            if batch_size is not None:
                input_shape = (batch_size, *input_shape[1:])
                model, inputs = _load(path, input_shape)
    shapes = _runtime_shapes(model, inputs, _shapes(model))
    inits = {i.name: i for i in model.graph.initializer}
    const_outputs = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    for n in model.graph.node:  # an exporter shares identical weights through Identity: still weights
        if n.op_type == "Identity" and (n.input[0] in inits or n.input[0] in const_outputs):
            const_outputs.update(n.output)
    layers, uncounted, seen_params = [], [], set()
    ids: dict[str, int] = {}
    sizes: dict[int, int] = {}
    events = []

    def sid(name):
        if name not in ids:
            ids[name] = len(ids)
            shp, nbytes = shapes.get(name, (None, 4))
            sizes[ids[name]] = math.prod(shp) * nbytes if shp is not None else 0
        return ids[name]

    for i, node in enumerate(model.graph.node):
        macs, elem, ok = node_cost(node, shapes)
        lname = node.name or f"{node.op_type}_{i}"
        params = 0
        for inp in node.input:
            if inp in inits and inp not in seen_params:
                seen_params.add(inp)
                params += int(np.prod(inits[inp].dims)) if len(inits[inp].dims) else 1
        if not ok:
            uncounted.append({"layer": lname, "op": node.op_type, "calls": 1})
        out_shape = shapes.get(node.output[0], (None, 4))[0] if node.output else None
        act = sum(math.prod(shapes[o][0]) * shapes[o][1] for o in node.output if o in shapes)
        if node.op_type != "Constant":
            layers.append(LayerProfile(name=lname, type=node.op_type, output_shape=list(out_shape) if out_shape
                                       else None, params=params, macs=macs, flops=2 * macs,
                                       elementwise_flops=elem, activation_bytes=act, calls=1,
                                       ops={node.op_type: 1}))
        reads = [sid(x) for x in node.input if x and x not in inits and x not in const_outputs]
        writes = [sid(x) for x in node.output if x and x not in const_outputs]
        events.append((reads, writes, lname))
    in_ids = [sid(i.name) for i in inputs]
    out_ids = [sid(o.name) for o in model.graph.output]
    peak, at = peak_from_events(events, sizes, in_ids, out_ids)
    weights = _distinct_weights(model.graph.initializer)
    params = sum(int(np.prod(i.dims)) if len(i.dims) else 1 for i in weights)
    stored = sum(int(np.prod(i.dims) if len(i.dims) else 1) * _DTYPE_BYTES.get(i.data_type, 4) for i in weights)
    if bits is not None:
        stored = math.ceil(params * bits / 8)
    macs = sum(lp.macs for lp in layers)
    elem = sum(lp.elementwise_flops for lp in layers)
    total = Total(params=params, macs=macs, flops=2 * macs, elementwise_flops=elem, weight_bytes=stored,
                  peak_activation_bytes=peak, peak_at=events[at][2] if events else None,
                  allocator_peak_bytes=None, allocator_note="not available: ONNX Runtime exposes no allocator peak")
    lat, en = None, None
    if latency:

        from effai.profile.latency import measure_latency

        feed = _example_feed(path, model, inputs)
        meter = Meter("cpu")
        with meter:
            lat = measure_latency(str(path), feed, runtime=runtime, threads=threads, warmup=warmup,
                                  repeats=repeats, min_seconds=min_seconds, max_seconds=max_seconds)
        if meter.joules is not None:
            en = Energy(joules=meter.joules / (lat.repeats + lat.warmup), method="measured",
                        detail=f"measured with {meter.source} ({runtime}, {lat.threads} threads)")
    if en is None and energy:
        en = estimate(macs, elem, stored, sum(sizes.values()), precision_for(bits))
    return Profile(model=name or Path(path).stem, input_shape=list(next(iter(input_shape.values())) if isinstance(input_shape, dict)
                                                       else input_shape or []), total=total, layers=layers,
                   latency=lat, energy=en, uncounted=uncounted, dtype="onnx", source="onnx",
                   notes={"peak_activation": "liveness over the ONNX graph's node order at this batch size",
                          "counting": "from the ONNX graph with inferred shapes"})
