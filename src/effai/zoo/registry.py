"""The model registry: `@register(name, info=...)` builders, and the public verbs around it.

A builder is a plain function `build(*, num_classes, in_channels, width_mult, resolution, **kw)`
returning an `nn.Module`. Options are validated once here, at the public boundary; builders
trust what they get. New models are added by registering a builder, never by an if/elif chain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from effai.errors import InputError, suggest
from effai.limits import MAX_CHANNELS, MAX_CLASSES, MAX_RESOLUTION, MAX_WIDTH_MULT
from effai.registry import Registry


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about a model at its default configuration.

    `input_shape` is (C, H, W) for image/spectrogram models and (D,) for vector models.
    `published_params` / `published_macs` are the reference numbers (see each model's docstring
    for the source); `min_resolution` is the smallest H or W the network accepts, and
    `fixed_input` says the spatial size is baked into the weights (flatten + dense models);
    `input_dtype` is "int64" for token models, whose `input_shape` is (sequence length,).
    """

    name: str
    family: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    paper: str
    published_params: int | None = None
    published_macs: int | None = None
    task: str = "classification"
    width_mult: float = 1.0
    min_resolution: int = 1
    fixed_input: bool = False
    input_dtype: str = "float32"  # "int64" for token models: input_shape is then (sequence length,)

    def to_dict(self) -> dict:
        """Plain-JSON view.

        >>> ModelInfo("m", "f", (1, 28, 28), 10, "p").to_dict()["input_shape"]
        [1, 28, 28]
        """
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


_BUILDERS: Registry[str, Callable[..., nn.Module]] = Registry("model")
_INFOS: dict[str, ModelInfo] = {}


def register(name: str, info: ModelInfo):
    """Decorator adding a builder to the zoo under `name` (a name registered twice raises
    `effai.registry.DuplicateRegistration`)."""

    def deco(fn):
        _BUILDERS.add(name, fn)
        _INFOS[name] = dataclasses.replace(info, name=name)
        return fn

    return deco


def names() -> list[str]:
    """All model names, sorted.

    >>> "resnet18" in names() and names() == sorted(names())
    True
    """
    return sorted(_BUILDERS)


def info(name: str) -> ModelInfo:
    """The `ModelInfo` of `name`.

    >>> info("mobilenet_v2").input_shape
    (3, 224, 224)
    """
    if name not in _INFOS:
        raise suggest(name, names(), "model")
    return _INFOS[name]


def _resolve(name: str, num_classes, in_channels, width_mult, resolution) -> dict:
    """Fill defaults from the model's info and validate every option (names argument and value)."""
    mi = info(name)
    vector = len(mi.input_shape) == 1
    if num_classes is None:
        num_classes = mi.num_classes
    elif mi.num_classes is None:
        raise InputError(f"num_classes={num_classes!r} given for {name!r}, which has no classes ({mi.task})")
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= MAX_CLASSES:
        raise InputError(f"num_classes={num_classes!r} for {name!r}: expected an integer from 1 to {MAX_CLASSES}")
    if in_channels is None:
        in_channels = mi.input_shape[0]
    elif isinstance(in_channels, bool) or not isinstance(in_channels, int) or not 1 <= in_channels <= MAX_CHANNELS:
        raise InputError(f"in_channels={in_channels!r} for {name!r}: expected an integer from 1 to {MAX_CHANNELS}")
    if width_mult is None:
        width_mult = mi.width_mult
    elif (isinstance(width_mult, bool) or not isinstance(width_mult, (int, float))
          or not 0 < width_mult <= MAX_WIDTH_MULT):  # NaN and inf fail the comparison too
        raise InputError(f"width_mult={width_mult!r} for {name!r}: expected a number > 0 and <= {MAX_WIDTH_MULT:g}")
    width_mult = float(width_mult)
    if vector:
        if resolution is not None:
            raise InputError(f"resolution={resolution!r} given for {name!r}, which takes a vector input "
                             f"of {mi.input_shape[0]} features (set in_channels instead)")
    else:
        if resolution is None:
            resolution = mi.input_shape[1:]
        hw = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        if (len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in hw)
                or min(hw) < mi.min_resolution or max(hw) > MAX_RESOLUTION):
            raise InputError(f"resolution={resolution!r} for {name!r}: expected an integer (or H,W pair) "
                             f"from {mi.min_resolution} to {MAX_RESOLUTION}")
        resolution = hw[0] if hw[0] == hw[1] else list(hw)
    return {"num_classes": num_classes, "in_channels": in_channels, "width_mult": width_mult,
            "resolution": resolution}


def create(name: str, *, num_classes=None, in_channels=None, width_mult=None, resolution=None,
           **kwargs) -> nn.Module:
    """Build zoo model `name`; None means the model's default for that option.

    `resolution` is an int (square) or an (H, W) pair. The model gets
    `model.effai_arch = {"name": name, "options": {...}}`, enough to rebuild it with
    `create(name, **options)`.

    >>> m = create("lenet5")
    >>> m.effai_arch["options"]["num_classes"], sum(p.numel() for p in m.parameters())
    (10, 61706)
    >>> create("resnet19")
    Traceback (most recent call last):
    effai.errors.InputError: unknown model 'resnet19'; did you mean: resnet18, resnet8, resnet50?
    """
    if name not in _BUILDERS:
        raise suggest(name, names(), "model")
    opts = _resolve(name, num_classes, in_channels, width_mult, resolution)
    try:
        model = _BUILDERS[name](**opts, **kwargs)
    except TypeError as e:  # an unknown keyword option
        raise InputError(f"bad option for model {name!r}: {e}") from None
    model.effai_arch = {"name": name, "options": {**opts, **kwargs}}  # type: ignore[assignment]  # a plain attribute
    return model


def input_shape(name: str, **opts) -> tuple[int, ...]:
    """Input shape (C, H, W) (or (D,) for vector models) that `create(name, **opts)` expects.

    >>> input_shape("mobilenet_v1", resolution=160)
    (3, 160, 160)
    >>> input_shape("resnet18", in_channels=1, resolution=28)
    (1, 28, 28)
    """
    known = {k: opts.pop(k, None) for k in ("num_classes", "in_channels", "width_mult", "resolution")}
    o = _resolve(name, **known)
    if o["resolution"] is None:
        return (o["in_channels"],)
    r = o["resolution"]
    h, w = (r, r) if isinstance(r, int) else r
    return (o["in_channels"], h, w)


def options_for(name: str, data, **options) -> dict:
    """`create` options that fit zoo model `name` to data set `data` (a DataSplits): its number
    of classes and input channels and, where it differs from the model's default, its
    resolution (not for a name outside the zoo); a token model (`input_dtype` "int64") also gets
    the data's `vocab_size`, and its sequence length as `in_channels`. `options` are added as given.

    >>> from effai import data as d
    >>> options_for("lenet5", d.load("digits"))
    {'num_classes': 10, 'in_channels': 1, 'resolution': 8}
    >>> options_for("text_transformer", d.load("keywords:seq_len=24"))
    {'num_classes': 4, 'in_channels': 24, 'vocab_size': 64}
    """
    mi = _INFOS.get(name)
    opts = {"num_classes": data.num_classes, "in_channels": data.input_shape[0]}
    if mi is not None and mi.input_dtype == "int64" and getattr(data, "vocab_size", None):
        opts["vocab_size"] = data.vocab_size  # a token model's embedding covers every id of the data
    opts.update(options)
    if mi is not None and len(mi.input_shape) > 1 and data.input_shape[-1] != mi.input_shape[-1]:
        opts["resolution"] = data.input_shape[-1]  # a vector model's only size is in_channels
    return opts


def check_input(model, shape) -> None:
    """Raise InputError if an input of `shape` does not suit `model` (a zoo name or created model).

    `shape` may include the batch dimension.

    >>> check_input("resnet18", (8, 3, 224, 224))
    >>> check_input("resnet18", (1, 28, 28))
    Traceback (most recent call last):
    effai.errors.InputError: resnet18: expected input (C,H,W)=(3,224,224) but got (1,28,28)
    """
    if isinstance(model, str):
        name, opts = model, {}
    else:
        arch = getattr(model, "effai_arch", None)
        if not arch:
            raise InputError("check_input needs a zoo model name or a model made by effai.zoo.create")
        name, opts = arch["name"], arch["options"]
    want = input_shape(name, **opts)
    got = tuple(int(s) for s in shape)
    if len(got) == len(want) + 1:
        got = got[1:]  # drop the batch dimension
    mi = info(name)
    ok = len(got) == len(want) and got[0] == want[0]
    if ok and len(want) == 3:
        ok = got[1:] == want[1:] if mi.fixed_input else min(got[1:]) >= mi.min_resolution
    if not ok:
        dims = "(C,H,W)" if len(want) == 3 else "(D,)"
        fmt = lambda t: "(" + ",".join(map(str, t)) + ")"  # noqa: E731
        raise InputError(f"{name}: expected input {dims}={fmt(want)} but got {fmt(got)}")
