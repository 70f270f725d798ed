"""A small BERT-style text classifier: token + position embeddings, post-norm encoder blocks with
separate Q/K/V/O projections (so heads and FFN neurons can be pruned), masked mean pooling.

Devlin et al. 2019 (BERT) at a tiny size: d=64, 2 layers, 4 heads, FFN 128, vocabulary 64,
sequences of 32 tokens (the `keywords` data set's defaults). The input is int64 token ids
(N, L); an optional `attention_mask` (N, L) is 1 for real tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import ModelInfo, register


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, keep):  # x (N, L, d); keep (N, 1, 1, L) bool or None
        n, t, _ = x.shape
        split = lambda z: z.view(n, t, self.heads, -1).transpose(1, 2)  # noqa: E731  (N, h, L, d/h)
        a = nn.functional.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                                       attn_mask=keep)
        return self.o(a.transpose(1, 2).reshape(n, t, self.heads * self.head_dim))


class EncoderBlock(nn.Module):
    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.attn, self.norm1 = SelfAttention(d, heads), nn.LayerNorm(d)
        self.ff1, self.act, self.ff2, self.norm2 = nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d), nn.LayerNorm(d)

    def forward(self, x, keep):
        x = self.norm1(x + self.attn(x, keep))
        return self.norm2(x + self.ff2(self.act(self.ff1(x))))


class TextTransformer(nn.Module):
    def __init__(self, num_classes=4, seq_len=32, vocab_size=64, d=64, layers=2, heads=4, ff=128):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab_size, d), nn.Embedding(seq_len, d)
        self.blocks = nn.ModuleList(EncoderBlock(d, heads, ff) for _ in range(layers))
        self.head = nn.Linear(d, num_classes)

    def forward(self, input_ids, attention_mask=None):
        t = input_ids.shape[1]
        x = self.tokens(input_ids) + self.positions(torch.arange(t, device=input_ids.device))  # (N, L, d)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        keep = mask[:, None, None, :].bool()
        for b in self.blocks:
            x = b(x, keep)
        w = mask.unsqueeze(-1).to(x.dtype)
        return self.head((x * w).sum(1) / w.sum(1).clamp(min=1))  # masked mean over tokens


@register("text_transformer", info=ModelInfo(
    "text_transformer", "transformer", (32,), 4, "Devlin et al. 2019, NAACL (BERT), tiny", task="text classification",
    published_params=73_348, published_macs=2_359_552, input_dtype="int64"))  # our own counts: no paper has this size
def _build(*, num_classes, in_channels, width_mult, resolution, vocab_size=64, layers=2, heads=4):
    d = max(heads, int(64 * width_mult)) // heads * heads
    return TextTransformer(num_classes, seq_len=in_channels, vocab_size=vocab_size, d=d, layers=layers,
                           heads=heads, ff=2 * d)
