"""Layer handlers for structured pruning: what each layer type does to channels, and how to cut it.

One handler per layer type (Torch-Pruning calls them pruners), registered for its classes with
`@register_layer(...)`; a subclass of a registered class uses its base's handler. A handler answers
four questions about a layer (see `LayerHandler`):

- `connect`: how its input channel spaces relate to its output ones, during the analysis;
- `prune_out` / `prune_in`: how to keep only some output channels / input entries;
- `filters` / `scale`: the per-channel tensors importance criteria score.

Adding a layer type (a LayerNorm, an Embedding, attention heads) is one more registered handler:
the analysis (`effai.prune.graph`), the importance scores and the slicing (`effai.prune.structured`)
never name layer types. Channels may lie on any axis (`Channels.dim`): a Linear reads and writes the
last one, so it works on (N, features) and on (N, L, d) tokens alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from effai.prune.channels import Analysis, Channels, LayerCall, refuse
from effai.registry import Registry

H = TypeVar("H", bound="LayerHandler")
L = TypeVar("L", bound=nn.Module)

LAYERS: Registry[type, LayerHandler[Any]] = Registry("layer handler", argument="layer")


def register_layer(*layer_types: type[nn.Module]) -> Callable[[type[H]], type[H]]:
    """Class decorator: register one instance of the decorated `LayerHandler` for `layer_types`
    (a type registered twice raises `effai.registry.DuplicateRegistration`)."""

    def deco(cls: type[H]) -> type[H]:
        handler = cls()
        for t in layer_types:
            LAYERS.add(t, handler)
        return cls

    return deco


def find_handler(module: nn.Module) -> LayerHandler[Any] | None:
    """The handler registered for `module`'s class or its nearest base; None if there is none."""
    return LAYERS.find(type(module))


def handler_for(module: nn.Module) -> LayerHandler[Any]:
    """`find_handler` for a module known to have one (a group member, a consumer)."""
    return LAYERS.lookup(type(module))


class LayerHandler(Generic[L]):
    """How one layer type `L` takes part in channel pruning. Override what the layer needs."""

    # True for layers whose output channels are a prunable space of their own (conv, linear):
    # `effai.prune.prunable` selects exactly these.
    produces_channels: ClassVar[bool] = False
    # True for layers with weights: a second call of the same module must see the same channels.
    stateful: ClassVar[bool] = True

    def connect(self, a: Analysis, call: LayerCall) -> Channels | None:
        """Record the layer in the analysis `a` and return the channels of its output."""
        raise NotImplementedError

    def prune_out(self, layer: L, idx: torch.Tensor) -> None:
        """Keep output channels `idx` (sorted indices) of a layer that produces a space."""
        raise NotImplementedError(f"{type(layer).__name__} produces no channels")

    def prune_in(self, layer: L, idx: torch.Tensor) -> None:
        """Keep entries `idx` along the channel axis of the layer's input (a consumer)."""
        raise NotImplementedError(f"{type(layer).__name__} consumes no channels")

    def filters(self, layer: L) -> torch.Tensor | None:
        """The weight whose dim 0 runs over the channels this layer is a member of (scored by the
        l1 / l2 / taylor criteria); None if it has none."""
        return None

    def scale(self, layer: L) -> torch.Tensor | None:
        """A learned per-channel scale (BatchNorm's gamma), for the bn_scale criterion."""
        return None


def slice_param(m: nn.Module, name: str, dim: int, idx: torch.Tensor) -> None:
    """Keep entries `idx` of `m.<name>` along `dim`; a parameter stays a parameter, a buffer a buffer."""
    t = getattr(m, name, None)
    if t is None:
        return
    new = t.detach().index_select(dim, idx).clone()
    if isinstance(t, nn.Parameter):
        setattr(m, name, nn.Parameter(new, requires_grad=t.requires_grad))
    else:
        setattr(m, name, new)  # a buffer: module.__setattr__ keeps it registered


def _needs(x: Channels | None, call: LayerCall) -> Channels:
    if x is None:
        refuse(call.fqn, "input channels unknown")
    return x


@register_layer(nn.Conv1d, nn.Conv2d, nn.Conv3d)
class ConvHandler(LayerHandler[_ConvNd]):
    """Dense convs make a new space from their input; depthwise convs (groups == channels) keep
    channel c -> channel c; other grouped convs pin their channels."""

    produces_channels = True

    def connect(self, a: Analysis, call: LayerCall) -> Channels | None:
        m = call.module
        assert isinstance(m, _ConvNd)
        x = _needs(a.along(call.x, 1, call.in_shape, call.fqn), call)
        if m.groups == 1:
            a.consume(call, x)
            return a.produce(call, dim=1)
        if _is_depthwise(m) and x.plain:
            a.consume(call, x)
            a.channelwise(call, x)
            return x
        a.pin(x)
        return a.fresh(call.out_shape, 1, pinned=True)

    def prune_out(self, layer: _ConvNd, idx: torch.Tensor) -> None:
        slice_param(layer, "weight", 0, idx)
        slice_param(layer, "bias", 0, idx)
        layer.out_channels = len(idx)

    def prune_in(self, layer: _ConvNd, idx: torch.Tensor) -> None:
        if _is_depthwise(layer):  # its filters follow its channels (dim 0); groups shrink with them
            self.prune_out(layer, idx)
            layer.in_channels = layer.groups = len(idx)
        else:
            slice_param(layer, "weight", 1, idx)
            layer.in_channels = len(idx)

    def filters(self, layer: _ConvNd) -> torch.Tensor | None:
        return layer.weight


def _is_depthwise(m: _ConvNd) -> bool:
    return m.groups > 1 and m.groups == m.in_channels == m.out_channels


@register_layer(nn.Linear)
class LinearHandler(LayerHandler[nn.Linear]):
    """Features on the last axis in and out: (N, d) vectors and (N, L, d) tokens alike."""

    produces_channels = True

    def connect(self, a: Analysis, call: LayerCall) -> Channels | None:
        x = _needs(a.along(call.x, -1, call.in_shape, call.fqn), call)
        a.consume(call, x)
        return a.produce(call, dim=-1)

    def prune_out(self, layer: nn.Linear, idx: torch.Tensor) -> None:
        slice_param(layer, "weight", 0, idx)
        slice_param(layer, "bias", 0, idx)
        layer.out_features = len(idx)

    def prune_in(self, layer: nn.Linear, idx: torch.Tensor) -> None:
        slice_param(layer, "weight", 1, idx)
        layer.in_features = len(idx)

    def filters(self, layer: nn.Linear) -> torch.Tensor | None:
        return layer.weight


@register_layer(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
class BatchNormHandler(LayerHandler[_BatchNorm]):
    """Normalises each channel (axis 1) on its own: its four vectors are sliced with its input."""

    def connect(self, a: Analysis, call: LayerCall) -> Channels | None:
        x = _needs(a.along(call.x, 1, call.in_shape, call.fqn), call)
        a.consume(call, x)
        if x.plain:  # after a flatten it normalises features, not channels: no channel scale
            a.channelwise(call, x)
        return x

    def prune_in(self, layer: _BatchNorm, idx: torch.Tensor) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            slice_param(layer, name, 0, idx)
        layer.num_features = len(idx)

    def scale(self, layer: _BatchNorm) -> torch.Tensor | None:
        return layer.weight


@register_layer(nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.SiLU, nn.GELU, nn.Tanh,
                nn.LeakyReLU, nn.ELU, nn.Mish, nn.Softplus, nn.Hardtanh, nn.Identity, nn.Dropout,
                nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
class ElementwiseHandler(LayerHandler[nn.Module]):
    """Acts on every entry alone (activations, dropout): channels pass through on any axis."""

    stateful = False

    def connect(self, a: Analysis, call: LayerCall) -> Channels | None:
        return call.x


@register_layer(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.ZeroPad2d, nn.ConstantPad1d,
                nn.ConstantPad2d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad2d)
class SpatialHandler(LayerHandler[nn.Module]):
    """Pooling, resizing, padding: act on the axes after the channels (which must be axis 1)."""

    stateful = False

    def connect(self, a: Analysis, call: LayerCall) -> Channels | None:
        return a.spatial(call.x, call.in_shape, call.fqn)


@register_layer(nn.Flatten)
class FlattenHandler(LayerHandler[nn.Flatten]):
    stateful = False

    def connect(self, a: Analysis, call: LayerCall) -> Channels | None:
        m = call.module
        assert isinstance(m, nn.Flatten)
        return a.flatten(call.x, call.in_shape, m.start_dim, m.end_dim, call.fqn)


@register_layer(nn.LayerNorm)
class LayerNormHandler(LayerHandler[nn.LayerNorm]):
    """Normalises over the last axis as a whole: removing one channel changes every other one's
    mean and variance, so its channels (a transformer's residual stream) are pinned. Heads and
    FFN neurons are pruned inside their blocks instead (`effai.prune.transformer`)."""

    def connect(self, a: Analysis, call: LayerCall) -> Channels | None:
        x = a.along(call.x, -1, call.in_shape, call.fqn)
        a.pin(x)
        return x


@register_layer(nn.Embedding)
class EmbeddingHandler(LayerHandler[nn.Embedding]):
    """Token ids in, vectors on the last axis out; they join the residual stream, kept whole."""

    def connect(self, a: Analysis, call: LayerCall) -> Channels | None:
        return a.fresh(call.out_shape, dim=-1, pinned=True)
