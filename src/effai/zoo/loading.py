"""Resolve a CLI MODEL argument into a model: a zoo name, a checkpoint folder, a state dict
plus --arch, the user's own `file.py:ClassName` (with --trust-code; `effai.zoo.usercode`), a
TorchScript file, or an ONNX file (kept as a path: ONNX runs in ONNX Runtime)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn as nn

from effai.errors import InputError
from effai.limits import check_tensor
from effai.zoo import usercode


@dataclass
class LoadedModel:
    name: str
    model: nn.Module | None = None  # None for ONNX files
    onnx_path: Path | None = None
    input_shape: tuple[int, ...] | None = None  # (C, H, W) when known
    meta: dict = field(default_factory=dict)


def load_model(spec: str, arch: str | None = None, options: dict | None = None, trust_pickle: bool = False,
               model_args: dict | None = None) -> LoadedModel:
    """Load what the user named. Options (num_classes, width_mult, ...) apply to zoo models
    (and to a user's class whose __init__ names them); `model_args` are the keyword arguments
    of a user's `file.py:ClassName` (as MODEL or as `arch` of a bare state dict).

    `trust_pickle` (the CLI's --trust-code, alias --trust-pickle) lets a file run code: a
    pickle may construct any Python object, a TorchScript file is a program, and a .py file
    runs when it is loaded. Without it all three are refused with one line, and nothing runs.

    >>> lm = load_model("lenet5")
    >>> lm.name, lm.input_shape
    ('lenet5', (1, 28, 28))
    """
    from effai import zoo
    from effai.train.checkpoint import check_finite, load_checkpoint

    options = {k: v for k, v in (options or {}).items() if v is not None}
    path = Path(spec)
    if model_args and not (usercode.is_code_spec(spec) or usercode.is_code_spec(arch)):
        raise InputError(f"--model-args: keyword arguments of a user's model (path/to/file.py:ClassName); {spec} "
                         "is not one (zoo options have their own flags)")
    if usercode.is_code_spec(spec):
        model = usercode.build(spec, model_args, trust_code=trust_pickle, **options)
        check_finite(model, spec)
        return LoadedModel(spec.rpartition(":")[2], model, input_shape=usercode.input_shape_of(model),
                           meta={"code": model.effai_code})
    if spec in zoo.names():
        model = zoo.create(spec, **options)
        return LoadedModel(spec, model, input_shape=zoo.input_shape(spec, **options))
    if not path.exists():
        if "/" not in spec and "." not in spec:
            raise zoo_suggestion(spec)
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir() or (path.name == "model.pt" and (path.parent / "model.json").exists()):
        model, meta = load_checkpoint(path, trust_pickle=trust_pickle)
        shape = (tuple(meta["input_shape"]) if meta.get("input_shape") else usercode.input_shape_of(model)
                 if meta.get("code") else zoo.input_shape(meta["arch"], **meta["options"]))
        return LoadedModel(meta["arch"], model, input_shape=shape, meta=meta)
    if path.suffix == ".onnx":
        return LoadedModel(path.stem, onnx_path=check_onnx_file(path), input_shape=onnx_input_shape(path))
    if _is_torchscript(path):
        import torch

        if not trust_pickle:
            raise InputError(f"{path}: a TorchScript file is a program (its code runs when the model runs) and is "
                             "refused by default; pass --trust-code only if you trust its origin")
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise InputError(f"{path}: unreadable TorchScript file ({str(e).splitlines()[0][:160]})") from None
        check_finite(model, path)
        return LoadedModel(path.stem, model)
    return _from_state_dict(path, arch, options, trust_pickle, model_args)


def _from_state_dict(path: Path, arch: str | None, options: dict, trust_pickle: bool,
                     model_args: dict | None) -> LoadedModel:
    """A bare state dict (or, trusted, a whole pickled model): the architecture must be named."""
    from effai import zoo
    from effai.fileio import load_torch_file
    from effai.train.checkpoint import check_finite, load_state_dict_checked

    state = load_torch_file(path, trust_pickle=trust_pickle)
    if isinstance(state, nn.Module):  # only reachable with --trust-pickle
        check_finite(state, path)
        return LoadedModel(path.stem, state)
    if arch is None:
        raise InputError(f"{path}: a state dict holds no architecture; name it with --arch (a zoo name, see "
                         "`effai zoo list`, or path/to/file.py:ClassName with --trust-code)")
    if usercode.is_code_spec(arch):
        model = usercode.build(arch, model_args, trust_code=trust_pickle, **options)
        load_state_dict_checked(model, state, path)
        return LoadedModel(arch.rpartition(":")[2], model, input_shape=usercode.input_shape_of(model))
    model = zoo.create(arch, **options)
    load_state_dict_checked(model, state, path)
    return LoadedModel(arch, model, input_shape=zoo.input_shape(arch, **options))


def check_compatible(model: nn.Module, data, where: str) -> None:
    """Raise InputError if `model` cannot classify `data` (a DataSplits): its forward fails on
    one training sample, or it outputs a different number of classes. Checked once, up front,
    so a mismatched model and data set fail with one line instead of deep inside a pipeline.

    >>> from effai import data as d, zoo
    >>> check_compatible(zoo.create("lenet5"), d.load("digits"), "lenet5")
    Traceback (most recent call last):
    effai.errors.InputError: lenet5: cannot run on one sample of data set 'digits' (input 1x1x8x8): Calculated padded input size per channel: (4 x 4). Kernel size: (5 x 5). Kernel size can't be greater than actual input size
    """
    import torch

    x = data.train.tensors[0][:1]
    shape = "x".join(map(str, x.shape))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:  # noqa: BLE001 - any failure of a foreign forward is the input's fault
        msg = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()[:200]
        raise InputError(f"{where}: cannot run on one sample of data set {data.name!r} (input {shape}): {msg}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != data.num_classes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"{where}: outputs {got} for input {shape}, but data set {data.name!r} has "
                         f"{data.num_classes} classes (expected (1, {data.num_classes}))")


def load_for_data(spec: str, data, arch: str | None = None, trust_pickle: bool = False,
                  onnx_refusal: str = "is not a PyTorch model", model_args: dict | None = None,
                  **options) -> LoadedModel:
    """Load MODEL to work on data set `data` (a DataSplits): a zoo name, a user's class, or a
    bare state dict with `arch`, is built for the data set's classes, channels and resolution
    (`data_options`; `options` are added); an ONNX file is refused (`onnx_refusal` says why);
    the model must run on one sample and output the data set's classes (`check_compatible`)."""
    from effai import zoo

    opts: dict | None
    if arch is not None and not usercode.is_code_spec(arch):  # a zoo arch of a state dict: classes and channels
        opts = zoo.options_for(spec, data, **options)
    else:
        opts = data_options(arch or spec, data, **options)
    lm = load_model(spec, arch=arch, options=opts, trust_pickle=trust_pickle,
                    model_args=model_args)
    if lm.model is None:
        raise InputError(f"{spec}: an ONNX file {onnx_refusal}; give a zoo name, checkpoint folder, state dict "
                         "(with --arch) or TorchScript file")
    check_compatible(lm.model, data, spec)
    return lm


def data_options(spec: str, data, **options) -> dict | None:
    """Options that size architecture `spec` (a zoo name or a user's `file.py:Name`) for data
    set `data`: classes, channels and (images) resolution; None for anything else (a
    checkpoint or a file keeps the shapes it holds).

    >>> from effai import data as d
    >>> data_options("my.py:Net", d.load("digits"))
    {'num_classes': 10, 'in_channels': 1, 'resolution': 8}
    """
    from effai import zoo

    if usercode.is_code_spec(spec):
        image = len(data.input_shape) == 3
        return {**zoo.options_for(spec, data), **({"resolution": data.input_shape[-1]} if image else {}), **options}
    return zoo.options_for(spec, data, **options) if spec in zoo.names() else (options or None)


def zoo_suggestion(name: str) -> InputError:
    from effai import zoo
    from effai.errors import suggest

    return suggest(name, zoo.names(), "model")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def check_onnx_file(path: Path) -> Path:
    """Validate an ONNX file without loading external data that points outside its folder."""
    try:
        import onnx
        from onnx.external_data_helper import uses_external_data
    except ImportError:
        raise InputError("ONNX models need the onnx package: pip install 'effai[all]'") from None
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise InputError(f"{path}: not a readable ONNX file ({str(e).splitlines()[0][:160]})") from None
    base = path.resolve().parent
    for t in m.graph.initializer:
        if uses_external_data(t):
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            target = (base / loc).resolve()
            if base not in target.parents:
                raise InputError(f"{path}: tensor {t.name!r} points to external data outside its folder ({loc!r}); refused")
    if not m.graph.node:
        raise InputError(f"{path}: the ONNX graph has no nodes (nothing to run)")
    _check_onnx_ops(path, m)
    return path


def _all_nodes(graph):
    """Every node of `graph` and, recursively, of its subgraphs (If / Loop / Scan bodies)."""
    from onnx import AttributeProto

    for node in graph.node:
        yield node
        for a in node.attribute:
            if a.type == AttributeProto.GRAPH:
                yield from _all_nodes(a.g)
            elif a.type == AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _all_nodes(g)


def _check_onnx_ops(path: Path, m) -> None:
    """Refuse a graph with an op that neither ONNX nor ONNX Runtime's contrib domains define,
    naming the op and its node (ONNX Runtime's own error names neither clearly); ops inside
    subgraphs (the branches of an If, the body of a Loop) count too."""
    import onnx.defs

    local = {(f.domain, f.name) for f in m.functions}
    for i, node in enumerate(_all_nodes(m.graph)):
        domain = node.domain or ""
        if (domain, node.op_type) in local or domain.startswith("com.microsoft"):
            continue
        known = domain in ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training") and onnx.defs.has(
            node.op_type, domain if domain != "ai.onnx" else "")
        if not known:
            op = f"{domain}:{node.op_type}" if domain else node.op_type
            raise InputError(f"{path}: node {node.name or f'#{i}'!r} uses op {op!r}, which neither ONNX nor "
                             "ONNX Runtime defines; unsupported")


def onnx_input_shape(path: Path) -> tuple[int, ...] | None:
    """(C, H, W) of the first graph input when its dimensions are fixed, else None."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        check_tensor([d or 1 for d in dims], 4, str(path), f"input {inp.name!r}")
        rest = dims[1:]
        return tuple(d for d in rest if d is not None) if rest and all(rest) else None
    return None
