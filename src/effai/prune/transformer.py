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
from effai.prune.core import check_sparsity, register_handler
from effai.prune.layers import slice_param
from effai.registry import Registry

IMPORTANCES = ("magnitude", "taylor")


@dataclass(frozen=True)
class HeadFFNConfig:
    """Remove `head_ratio` of every attention layer's heads and `ffn_ratio` of every FFN's neurons
    (at least one of each is kept), ranked by `importance`; `data` (a DataLoader or DataSplits,
    batches of (x, y)) feeds the "taylor" importance."""

    head_ratio: float = 0.5
    ffn_ratio: float = 0.5
    importance: str = "magnitude"
    data: object = None
    batches: int = 4

    def __post_init__(self):
        check_sparsity(self.head_ratio, "head_ratio")
        check_sparsity(self.ffn_ratio, "ffn_ratio")
        if self.importance not in IMPORTANCES:
            raise InputError(f"importance={self.importance!r}: expected one of {', '.join(IMPORTANCES)}")
        if self.importance == "taylor" and self.data is None:
            raise InputError("importance='taylor': needs data (a DataLoader or DataSplits)")


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


def _keep(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    n = len(scores)
    keep = max(1, n - int(round(n * ratio)))
    return torch.sort(torch.topk(scores, keep).indices).values


def _prune_attention(a: Attention, ratio: float, grads) -> None:
    hd = a.q.out_features // a.heads
    per_head = sum(_score(p.weight, grads).reshape(a.heads, hd, -1).sum((1, 2)) for p in (a.q, a.k, a.v))
    per_head = per_head + _score(a.o.weight, grads).reshape(a.o.out_features, a.heads, hd).sum((0, 2))
    heads = _keep(per_head, ratio)
    idx = (heads[:, None] * hd + torch.arange(hd)).flatten()
    for lin in (a.q, a.k, a.v):
        slice_param(lin, "weight", 0, idx)
        slice_param(lin, "bias", 0, idx)
        lin.out_features = len(idx)
    slice_param(a.o, "weight", 1, idx)
    a.o.in_features = len(idx)
    a.set_heads(len(heads))


def _prune_ffn(f: FFN, ratio: float, grads) -> None:
    score = _score(f.up.weight, grads).sum(1) + _score(f.down.weight, grads).sum(0)
    idx = _keep(score, ratio)
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
    grads = _gradients(model, config) if config.importance == "taylor" else None
    with torch.no_grad():
        for block in found:
            if isinstance(block, Attention) and config.head_ratio > 0:
                _prune_attention(block, config.head_ratio, grads)
            elif isinstance(block, FFN) and config.ffn_ratio > 0:
                _prune_ffn(block, config.ffn_ratio, grads)
    return model
