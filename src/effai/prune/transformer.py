"""Structured pruning inside transformer blocks: whole attention heads (their rows of Q, K and V
and columns of O, removed together) and FFN neurons (rows of the first Linear and columns of the
second, together). The residual width d never changes, so LayerNorm and the residual additions
are untouched (`layers.LayerNormHandler` pins them for channel pruning).

Blocks are found by handlers registered per module class (`@register_block`): effai's zoo
`text_transformer` and Hugging Face BERT are built in. Importance: `"magnitude"` (l2 norm of a
head's or neuron's weights) or `"taylor"` (|weight x gradient| summed over a few batches of data).

>>> import torch, effai
>>> m = effai.zoo.create("text_transformer").eval()
>>> _ = effai.prune.prune_(m, HeadFFNConfig(head_ratio=0.5, ffn_ratio=0.5))
>>> m.blocks[0].attn.heads, m.blocks[0].ff1.out_features, m(torch.zeros(2, 32, dtype=torch.long)).shape
(2, 64, torch.Size([2, 4]))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from effai.errors import InputError
from effai.prune import latency
from effai.prune.core import check_sparsity, register_handler
from effai.prune.layers import slice_param
from effai.registry import Registry

IMPORTANCES = ("magnitude", "taylor")
ALLOCATIONS = ("auto", "latency", "uniform")


@dataclass(frozen=True)
class HeadFFNConfig:
    """Remove `head_ratio` of the attention heads and `ffn_ratio` of the FFN neurons (at least one
    of each is kept per layer), ranked by `importance`; `data` (a DataLoader or DataSplits,
    batches of (x, y)) feeds the "taylor" importance.

    `allocation="uniform"` removes those shares from every layer. `allocation="latency"` spends
    the same budgets (heads, neurons) where ONNX Runtime, at `threads` threads (0: its default)
    and sequences of `seq_len` tokens, measures the most time saved per head / neuron removed
    (effai.prune.latency.allocate, the allocation channel pruning uses), no layer losing more
    than `max_ratio`, FFN widths rounded to `round_to`; layers of the same shape are pruned
    evenly. `allocation="auto"` (default) is "latency" for models of at least
    `effai.prune.structured.AUTO_MIN_MACS` MACs in their attention and FFN layers and uniform
    below (small models' layer timings are noise)."""

    head_ratio: float = 0.5
    ffn_ratio: float = 0.5
    importance: str = "magnitude"
    data: object = None
    batches: int = 4
    allocation: str = "auto"
    threads: int = 1
    seq_len: int = 128
    round_to: int = 1
    max_ratio: float = 0.75

    def __post_init__(self):
        check_sparsity(self.head_ratio, "head_ratio")
        check_sparsity(self.ffn_ratio, "ffn_ratio")
        check_sparsity(self.max_ratio, "max_ratio")
        if self.importance not in IMPORTANCES:
            raise InputError(f"importance={self.importance!r}: expected one of {', '.join(IMPORTANCES)}")
        if self.importance == "taylor" and self.data is None:
            raise InputError("importance='taylor': needs data (a DataLoader or DataSplits)")
        if self.allocation not in ALLOCATIONS:
            raise InputError(f"allocation={self.allocation!r}: expected one of {', '.join(ALLOCATIONS)}")
        for field, low in (("threads", 0), ("seq_len", 1), ("round_to", 1)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(f"{field}={v!r}: expected an integer >= {low}")


@dataclass
class Attention:
    """One attention layer as the pruner sees it: its projections and how to set the head count."""

    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    heads: int
    set_heads: Callable[[int], None]


@dataclass
class FFN:
    up: nn.Linear
    down: nn.Linear


BLOCKS: Registry[type, Callable[[nn.Module], Any]] = Registry("transformer block", argument="module")


def register_block(*types: type):
    """Decorator: `fn(module) -> Attention | FFN` describes modules of `types` to the pruner."""

    def deco(fn):
        for t in types:
            BLOCKS.add(t, fn)
        return fn

    return deco


def _zoo_blocks():
    from effai.zoo.text_transformer import EncoderBlock, SelfAttention

    @register_block(SelfAttention)
    def _attn(m):
        return Attention(m.q, m.k, m.v, m.o, m.heads, lambda h: setattr(m, "heads", h))

    @register_block(EncoderBlock)
    def _ffn(m):
        return FFN(m.ff1, m.ff2)


def _hf_blocks():
    try:
        from transformers.models.bert import modeling_bert as hf
    except ImportError:
        return

    def set_bert_heads(att, h):
        att.self.num_attention_heads = h
        att.self.all_head_size = h * att.self.attention_head_size

    @register_block(hf.BertAttention)
    def _bert_attn(m):
        s = m.self
        return Attention(s.query, s.key, s.value, m.output.dense, s.num_attention_heads,
                         lambda h: set_bert_heads(m, h))

    @register_block(hf.BertLayer)
    def _bert_ffn(m):
        return FFN(m.intermediate.dense, m.output.dense)


_zoo_blocks()
_hf_blocks()


def _gradients(model: nn.Module, config: HeadFFNConfig) -> dict[int, torch.Tensor]:
    """|w * dL/dw| per weight, summed over `config.batches` batches (the Taylor score)."""
    from effai.data.splits import DataSplits

    loader = config.data.loaders(batch_size=32)[0] if isinstance(config.data, DataSplits) else config.data
    scores: dict[int, torch.Tensor] = {}
    was = model.training
    model.eval()
    try:
        for i, (x, y) in enumerate(loader):  # type: ignore[arg-type]
            if i >= config.batches:
                break
            model.zero_grad()
            out = model(x)
            logits = out if isinstance(out, torch.Tensor) else out[0]
            nn.functional.cross_entropy(logits, y).backward()
            for p in model.parameters():
                if p.grad is not None:
                    scores[id(p)] = scores.get(id(p), 0) + (p.detach() * p.grad).abs()
    finally:
        model.zero_grad()
        model.train(was)
    return scores


def _score(w: torch.Tensor, grads: dict[int, torch.Tensor] | None) -> torch.Tensor:
    if grads is None:
        return w.detach() ** 2
    return grads.get(id(w), torch.zeros_like(w))


def uniform_keep(n: int, ratio: float) -> int:
    """Heads / neurons a layer of `n` keeps when losing `ratio` of them (at least one).

    >>> uniform_keep(12, 0.5), uniform_keep(4, 0.9)
    (6, 1)
    """
    return max(1, n - int(round(n * ratio)))


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    return torch.sort(torch.topk(scores, keep).indices).values


def _size(block: Attention | FFN) -> int:
    return block.heads if isinstance(block, Attention) else block.up.out_features


def runtime_layer(block: Attention | FFN, keep: int, seq_len: int):
    """The layer the runtime runs for `block` keeping `keep` heads / neurons (for timing)."""
    if isinstance(block, Attention):
        return latency.AttentionLayer(seq_len, block.q.in_features, keep, block.q.out_features // block.heads)
    return latency.FFNLayer(seq_len, block.up.in_features, keep)


def allocation_of(found: list, config: HeadFFNConfig) -> str:
    """The allocation `config` asks for, with "auto" resolved for these blocks."""
    if config.allocation != "auto":
        return config.allocation
    from effai.prune import structured  # the threshold channel pruning uses

    macs = sum(runtime_layer(b, _size(b), config.seq_len).macs() for b in found)
    return "latency" if macs >= structured.AUTO_MIN_MACS else "uniform"


def latency_keep(found: list, config: HeadFFNConfig, timer=None) -> list[int]:
    """Heads / neurons each block keeps under the latency-aware allocation. Blocks of the same
    shape form one group (pruned evenly: their costs are the same, and unequal widths would only
    cost accuracy); each group's layer is timed alone at a few kept counts (`latency.time_layers`,
    or `timer(layers, threads) -> {layer: ms}`), and the head budget and the neuron budget are
    each spent where they save the most time (`latency.allocate`)."""
    keep = [_size(b) for b in found]
    for kind, ratio, round_to in ((Attention, config.head_ratio, 1), (FFN, config.ffn_ratio, config.round_to)):
        same: dict = {}  # the block's full-size runtime layer -> indices of the blocks of that shape
        for i, b in enumerate(found):
            if isinstance(b, kind):
                same.setdefault(runtime_layer(b, _size(b), config.seq_len), []).append(i)
        if not same or ratio == 0:
            continue
        groups = list(same.values())
        probes = [[(k, runtime_layer(found[g[0]], k, config.seq_len)) for k in latency.probe_keeps(
            _size(found[g[0]]), max(config.max_ratio, ratio), round_to, f"{kind.__name__} {g[0]}")] for g in groups]
        ms = (timer or latency.time_layers)([lay for p in probes for _, lay in p], config.threads)
        costs = [latency.GroupCost(r, f"{r:04d}", *(tuple(len(g) * v for v in col) for col in zip(
            *((k, ms[lay], lay.macs()) for k, lay in p), strict=True))) for r, (g, p) in enumerate(
            zip(groups, probes, strict=True))]
        for r, total in latency.allocate(costs, ratio, round_to).items():
            for j, i in enumerate(groups[r]):  # the group's kept total, spread evenly over its blocks
                keep[i] = _even_share(total, len(groups[r]), j, round_to)
    return keep


def _even_share(total: int, n: int, j: int, round_to: int) -> int:
    """Block `j`'s share of `total` kept heads / neurons over `n` blocks: equal up to one, or a
    multiple of `round_to` (rounded down, at least `round_to`)."""
    if round_to == 1:
        return total // n + (j < total % n)
    return max(round_to, total // n // round_to * round_to)


def _prune_attention(a: Attention, n_keep: int, grads) -> None:
    hd = a.q.out_features // a.heads
    per_head = sum(_score(p.weight, grads).reshape(a.heads, hd, -1).sum((1, 2)) for p in (a.q, a.k, a.v))
    per_head = per_head + _score(a.o.weight, grads).reshape(a.o.out_features, a.heads, hd).sum((0, 2))
    heads = _top(per_head, n_keep)
    idx = (heads[:, None] * hd + torch.arange(hd)).flatten()
    for lin in (a.q, a.k, a.v):
        slice_param(lin, "weight", 0, idx)
        slice_param(lin, "bias", 0, idx)
        lin.out_features = len(idx)
    slice_param(a.o, "weight", 1, idx)
    a.o.in_features = len(idx)
    a.set_heads(len(heads))


def _prune_ffn(f: FFN, n_keep: int, grads) -> None:
    score = _score(f.up.weight, grads).sum(1) + _score(f.down.weight, grads).sum(0)
    idx = _top(score, n_keep)
    slice_param(f.up, "weight", 0, idx)
    slice_param(f.up, "bias", 0, idx)
    f.up.out_features = len(idx)
    slice_param(f.down, "weight", 1, idx)
    f.down.in_features = len(idx)


@register_handler(HeadFFNConfig)
def _prune_heads_and_ffn(model: nn.Module, config: HeadFFNConfig, filter_fn) -> nn.Module:
    from effai.prune.core import prunable

    filter_fn = None if filter_fn is prunable else filter_fn  # blocks, not single layers, are chosen here
    found = []
    for fqn, m in model.named_modules():
        describe = BLOCKS.find(type(m))
        if describe is not None and (filter_fn is None or filter_fn(m, fqn)):
            found.append(describe(m))
    if not found:
        raise InputError(f"{type(model).__name__}: no attention or FFN block effai knows (register one with "
                         "effai.prune.transformer.register_block)")
    if allocation_of(found, config) == "latency":
        keep = latency_keep(found, config)
    else:
        keep = [uniform_keep(_size(b), config.head_ratio if isinstance(b, Attention) else config.ffn_ratio)
                for b in found]
    grads = _gradients(model, config) if config.importance == "taylor" else None
    with torch.no_grad():
        for block, k in zip(found, keep, strict=True):
            if k == _size(block):
                continue
            (_prune_attention if isinstance(block, Attention) else _prune_ffn)(block, k, grads)
    return model
