"""The vocabulary of the channel dependency analysis: channel spaces, the channels a tensor
carries, and the `Analysis` state that layer handlers (`effai.prune.layers`) read and write.

A *space* is a set of channels that must be pruned together (a union-find node with a size).
A tensor's channel axis (`Channels.dim`: 1 for NCHW and (N, C), the last axis for (N, L, d))
holds a list of *segments*, one per space it concatenates; a segment's `multiplier` says how many
entries each channel owns along the axis (a flattened (C, H, W) tensor has multiplier H*W).

Layers attach to spaces as *members*: a `producer` makes the space (a conv's filters); a
`channelwise` layer acts on each of its channels separately (BatchNorm, a depthwise conv). Every
layer whose input is sliced when channels go (a consumer: convs, linears, norms) is recorded
with its input `Channels`, so the pruner can rebuild each consumer's input indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, NoReturn

from torch import nn

from effai.errors import InputError

PRODUCER, CHANNELWISE = "out", "channelwise"


class Spaces:
    """Union-find over channel spaces: size and pinned flag (never pruned) per root."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.pinned: list[bool] = []

    def new(self, size: int, pinned: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.pinned.append(pinned)
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int, where: str) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if self.size[a] != self.size[b]:
            raise InputError(f"{where}: joins {self.size[a]} and {self.size[b]} channels; cannot follow this graph")
        self.parent[b] = a
        self.pinned[a] = self.pinned[a] or self.pinned[b]

    def pin(self, a: int) -> None:
        self.pinned[self.find(a)] = True

    def is_pinned(self, a: int) -> bool:
        return self.pinned[self.find(a)]


class Segment(NamedTuple):
    space: int
    multiplier: int = 1  # entries per channel along the axis (H*W after flattening (C, H, W))


@dataclass(frozen=True)
class Channels:
    """What lies along one tensor's channel axis `dim` (a non-negative axis index)."""

    segments: tuple[Segment, ...]
    dim: int = 1

    @property
    def plain(self) -> bool:
        """One entry per channel (no flattened spatial positions)."""
        return all(s.multiplier == 1 for s in self.segments)


class Member(NamedTuple):
    """A layer attached to a space: its role, name, module and the channel offset of the space
    along the layer's own channel axis (non-zero for a channelwise layer over a concatenation)."""

    role: str  # PRODUCER | CHANNELWISE
    fqn: str
    module: nn.Module
    offset: int = 0


class LayerCall(NamedTuple):
    """One call of a module in the traced graph, as a layer handler sees it."""

    fqn: str
    module: nn.Module
    x: Channels | None  # the channels of its first input (None: not a channel tensor)
    in_shape: tuple | None
    out_shape: tuple | None


class Analysis:
    """The state of one analysis: spaces, members and consumers, with the operations that
    handlers and graph rules compose."""

    def __init__(self) -> None:
        self.spaces = Spaces()
        self.members: list[tuple[int, Member]] = []  # (space, member)
        self.consumers: dict[str, tuple[nn.Module, Channels]] = {}
        self.outputs: dict[str, Channels | None] = {}  # fqn -> what its first call produced

    # ---------------------------------------------------------------- making and pinning
    def fresh(self, shape: tuple | None, dim: int = 1, pinned: bool = False) -> Channels | None:
        """A new space along axis `dim` of a tensor of `shape` (None for a scalar or a vector)."""
        if shape is None or len(shape) < 2:
            return None
        dim = dim % len(shape)
        return Channels((Segment(self.spaces.new(shape[dim], pinned)),), dim)

    def pin(self, x: Channels | None) -> None:
        for seg in x.segments if x is not None else ():
            self.spaces.pin(seg.space)

    def all_pinned(self, x: Channels) -> bool:
        return all(self.spaces.is_pinned(s.space) for s in x.segments)

    def along(self, x: Channels | None, dim: int, shape: tuple | None, where: str) -> Channels | None:
        """`x` read with its channels on axis `dim` of `shape`. Pinned channels can be re-read on
        any axis (nothing of them is ever sliced); prunable ones on another axis are refused."""
        if x is None or shape is None:
            return x
        dim = dim % len(shape)
        if x.dim == dim:
            return x
        if not self.all_pinned(x):
            refuse(where, f"expects channels on axis {dim}, but they lie on axis {x.dim} of shape {tuple(shape)}")
        return self.fresh(shape, dim, pinned=True)

    def spatial(self, x: Channels | None, shape: tuple | None, where: str) -> Channels | None:
        """`x` under an op on the axes after the channels (pooling, padding, resizing): the
        channels must be axis 1 of a tensor with spatial axes; otherwise they must be pinned."""
        if x is not None and shape is not None and len(shape) < 3 and not self.all_pinned(x):
            refuse(where, f"acts on the last axis of a {len(shape)}-d tensor, which holds the channels")
        return self.along(x, 1, shape, where)

    # ---------------------------------------------------------------- joining
    def join(self, a: Channels, b: Channels, where: str) -> Channels:
        """Tensors that meet channel by channel (a residual add, a gate): their spaces become one.
        Layouts that do not line up (a concatenation added to one conv output) are pinned."""
        aligned = (len(a.segments) == len(b.segments)
                   and [s.multiplier for s in a.segments] == [s.multiplier for s in b.segments])
        if not aligned:
            self.pin(a)
            self.pin(b)
            return a
        for sa, sb in zip(a.segments, b.segments, strict=True):
            self.spaces.union(sa.space, sb.space, where)
        return a

    # ---------------------------------------------------------------- what layers record
    def repeated(self, call: LayerCall) -> bool:
        """True when `call.fqn` was called before (the caller then returns `self.outputs[call.fqn]`):
        its input must agree with the first call's, or stay as it is where the first was pinned."""
        if call.fqn not in self.outputs:
            return False
        first = self.consumers.get(call.fqn)
        if first is None:
            self.pin(call.x)
        elif call.x is not None:
            self.join(first[1], call.x, call.fqn)
        return True

    def consume(self, call: LayerCall, x: Channels) -> None:
        """Record that `call.module`'s input (channels `x`) is sliced when those channels go."""
        self.consumers[call.fqn] = (call.module, x)

    def produce(self, call: LayerCall, dim: int) -> Channels | None:
        """A new space made by the layer (its output channels on axis `dim`)."""
        out = self.fresh(call.out_shape, dim)
        if out is not None:
            self.members.append((out.segments[0].space, Member(PRODUCER, call.fqn, call.module)))
        return out

    def channelwise(self, call: LayerCall, x: Channels) -> None:
        """The layer acts on each channel of `x` separately: a member of every space in it."""
        offset = 0
        for seg in x.segments:
            self.members.append((seg.space, Member(CHANNELWISE, call.fqn, call.module, offset)))
            offset += self.spaces.size[seg.space] * seg.multiplier

    # ---------------------------------------------------------------- shape changes
    def flatten(self, x: Channels | None, shape: tuple | None, start: int, end: int, where: str) -> Channels | None:
        """Channels after merging axes start..end of a tensor of `shape`."""
        if x is None or shape is None:
            return x
        start, end = start % len(shape), end % len(shape)
        if x.dim < start:
            return x
        if x.dim > end:
            return Channels(x.segments, x.dim - (end - start))
        if x.dim == start and start > 0:  # channel c owns the block of the axes after it
            inner = math.prod(shape[start + 1:end + 1])
            return Channels(tuple(Segment(s.space, s.multiplier * inner) for s in x.segments), x.dim)
        if self.all_pinned(x):
            return self.fresh(tuple(shape[:start]) + (math.prod(shape[start:end + 1]),) + tuple(shape[end + 1:]),
                              start, pinned=True)
        refuse(where, f"flatten of axes {start}..{end} interleaves the channels of axis {x.dim}")


def refuse(where: str, what: str) -> NoReturn:
    """Stop the analysis at a layer it cannot follow (one line naming the layer)."""
    raise InputError(f"layer {where!r}: {what}; the channel dependency analysis cannot follow it "
                     "(exclude the model from structured pruning)")
