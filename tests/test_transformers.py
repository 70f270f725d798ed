"""Transformers: token inputs, several inputs, and exact counts for BERT, GPT-2, nn.TransformerEncoder
and a small ViT, from torch and from their ONNX files, against the hand count per layer
4*d^2*L (projections) + 2*L^2*d (QK^T and AV) + 2*d*ff*L (feed-forward), embeddings as lookups."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import effai
from effai.errors import InputError
from effai.profile.inputs import as_call, parse_specs
from effai.profile.latency import export_fp32_onnx
from effai.profile.onnx_graph import profile_onnx

os.environ["HF_HUB_OFFLINE"] = "1"
D, LAYERS, SEQ, FF, HEADS, VOCAB = 64, 2, 32, 128, 4, 100
HAND = LAYERS * (4 * D * D * SEQ + 2 * SEQ * SEQ * D + 2 * D * FF * SEQ)


def _distinct(model: nn.Module) -> nn.Module:
    """Trained-like weights: a fresh model's identical tensors (cloned layers, LayerNorm ones)
    are stored once by the ONNX exporter, which would make its parameter count differ."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return model.eval()


def bert():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                  intermediate_size=FF, vocab_size=VOCAB, max_position_embeddings=SEQ, num_labels=2)
    return _distinct(transformers.BertForSequenceClassification(cfg))


def gpt2():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_embd=D, n_layer=LAYERS, n_head=HEADS, n_inner=FF, n_positions=SEQ,
                                  vocab_size=VOCAB, bos_token_id=0, eos_token_id=0)
    return _distinct(transformers.GPT2LMHeadModel(cfg))


def encoder():
    layer = nn.TransformerEncoderLayer(D, HEADS, FF, batch_first=True)
    return _distinct(nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False))


class ViT(nn.Module):
    """A minimal ViT: 4x4 patches of a 3x24x24 image (36 patches + a class token = 37 tokens)."""

    def __init__(self, d=D, layers=LAYERS, heads=HEADS, ff=FF, classes=10):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, 37, d))
        self.blocks = nn.ModuleList(Block(d, heads, ff) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)  # (N, 36, d)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x[:, 0]))


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads, self.ln1, self.ln2 = heads, nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v)  # (N, heads, t, d/heads)
        x = x + self.proj(a.transpose(1, 2).reshape(n, t, d))
        return x + self.mlp(self.ln2(x))


def _hand(seq):
    return LAYERS * (4 * D * D * seq + 2 * seq * seq * D + 2 * D * FF * seq)


def _ids():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB, (1, SEQ), generator=g), torch.ones(1, SEQ, dtype=torch.long)


CASES = {  # name: (model, example inputs, exact MACs = hand count + the heads the hand count leaves out)
    "bert": (bert, lambda: _ids(), HAND + D * D + D * 2),  # pooler and classifier on the [CLS] token
    "gpt2": (gpt2, lambda: dict(zip(("input_ids", "attention_mask"), _ids(), strict=True)), HAND + SEQ * D * VOCAB),
    "encoder": (encoder, lambda: torch.randn(1, SEQ, D), HAND),
    "vit": (lambda: _distinct(ViT()), lambda: torch.randn(1, 3, 24, 24), _hand(37) + 36 * D * 48 + D * 10),  # patches, head
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_transformer_counts_match_hand_count_from_torch_and_onnx(name, tmp_path):
    build, inputs, expected = CASES[name]
    model, x = build(), inputs()
    n_params = sum(p.numel() for p in model.parameters())
    p = effai.profile(model, example_inputs=x, latency=False)
    assert not p.uncounted, p.uncounted
    assert (p.total.params, p.total.macs) == (n_params, expected)
    f = export_fp32_onnx(model, tmp_path / f"{name}.onnx", x, dynamic=True)
    args, kwargs = as_call(x)
    shape = tuple(next(iter([*args, *kwargs.values()])).shape)
    q = profile_onnx(f, input_shape=shape, latency=False)
    assert not [u for u in q.uncounted if u["op"] in ("MatMul", "Gemm", "Conv")], q.uncounted
    assert (q.total.params, q.total.macs) == (n_params, expected)
    assert q.total.peak_activation_bytes < q.total.weight_bytes  # weights are never activations


def test_fused_attention_with_a_padding_mask_is_counted():
    model = encoder()
    x, mask = torch.randn(1, SEQ, D), torch.zeros(1, SEQ, dtype=torch.bool)
    mask[0, -4:] = True
    p = effai.profile(model, example_inputs={"src": x, "src_key_padding_mask": mask}, latency=False)
    assert not p.uncounted and p.total.macs == HAND


def test_token_models_get_integer_ids_and_named_specs():
    model = bert()
    by_shape = effai.profile(model, input_shape=(1, SEQ), latency=False)  # first layer an embedding: ids
    by_specs = effai.profile(model, input_shape=f"input_ids:1x{SEQ}:int64,attention_mask:1x{SEQ}:int64",
                             latency=False)
    assert by_shape.total.macs == by_specs.total.macs == HAND + D * D + 2 * D
    assert by_specs.input_shape == [1, SEQ]


def test_onnx_with_two_inputs_runs_at_another_batch_and_sequence(tmp_path):
    model = bert()
    ids, mask = _ids()
    f = export_fp32_onnx(model, tmp_path / "b.onnx", {"input_ids": ids, "attention_mask": mask}, dynamic=True)
    p = profile_onnx(f, input_shape="input_ids:2x16:int64,attention_mask:2x16:int64", repeats=2, warmup=0,
                     min_seconds=0)
    assert p.input_shape == [2, 16] and p.latency.batch_size == 2
    assert p.total.macs == 2 * (LAYERS * (4 * D * D * 16 + 2 * 16 * 16 * D + 2 * D * FF * 16) + D * D + 2 * D)


@pytest.mark.parametrize("text, why", [("ids:1x8:complex", "dtype"), ("1x:int64", "name:shape"),
                                       ("a:1x2,a:1x2", "differ"), ("ids:0x8:int64", "positive")])
def test_bad_input_specs_are_refused_in_one_line(text, why):
    with pytest.raises(InputError, match=why):
        parse_specs(text)


def test_a_dict_with_a_non_tensor_is_refused():
    with pytest.raises(InputError, match="maps names to tensors"):
        effai.profile(encoder(), example_inputs={"src": [1, 2]}, latency=False)


def test_token_npz_keeps_ids_and_mask_and_float_data_is_never_rescaled(tmp_path):
    import numpy as np

    from effai import data

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 50, size=(40, 12)), np.arange(40) % 2
    mask = np.ones_like(x)
    mask[:, -3:] = 0
    np.savez(tmp_path / "t.npz", x=x, y=y, mask=mask)
    ds = data.load(tmp_path / "t.npz")
    assert ds.is_tokens and ds.train.tensors[0].dtype == torch.int64 and ds.input_shape == (12,)
    assert ds.masks is not None and ds.masks["train"].shape == ds.train.tensors[0].shape
    assert int(ds.masks["test"][:, -3:].sum()) == 0
    np.savez(tmp_path / "f.npz", x=rng.uniform(0, 200, size=(40, 1, 4, 4)).astype(np.float32), y=y)
    assert float(data.load(tmp_path / "f.npz").train.tensors[0].max()) > 150  # kept as given, not /255
    np.savez(tmp_path / "bad.npz", x=x, y=y, mask=mask[:, :3])
    with pytest.raises(InputError, match="'mask' must be"):
        data.load(tmp_path / "bad.npz")


def test_keywords_text_set_needs_word_order():
    import numpy as np

    from effai import data

    ds = data.load("keywords", n=400)
    x, y = ds.train.tensors
    assert ds.is_tokens and ds.num_classes == 4 and ds.masks is not None
    mixed = x[(y == 1) | (y == 2)]  # AB and BA: the same bag of keywords (one A, one B), order differs
    assert ((mixed == 2).sum(1) == 1).all() and ((mixed == 3).sum(1) == 1).all()
    first = [int(row[(row == 2) | (row == 3)][0]) for row in x]
    assert np.array_equal(np.array(first) - 2, (y // 2).numpy())


def test_cli_profiles_a_token_model_with_named_inputs_and_its_onnx_file(tmp_path):
    import json

    from typer.testing import CliRunner

    from effai.cli import app

    run = CliRunner().invoke
    specs = "input_ids:2x16:int64,attention_mask:2x16:int64"
    r = run(app, ["profile", "text_transformer", "--input", specs, "--no-latency", "--json"])
    assert r.exit_code == 0, r.output
    torch_macs = json.loads(r.stdout)["total"]["macs"]
    ids = torch.randint(0, 64, (1, SEQ), generator=torch.Generator().manual_seed(0))
    f = export_fp32_onnx(effai.zoo.create("text_transformer"), tmp_path / "t.onnx",
                         {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, dynamic=True)
    r = run(app, ["profile", str(f), "--input", specs, "--no-latency", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["input_shape"] == [2, 16] and out["total"]["macs"] == torch_macs
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "effai.cli", "profile", "text_transformer", "--input",
                        "input_ids:2x16:complex", "--no-latency"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "dtype must be one of" in r.stderr


def test_pruning_half_the_heads_and_ffn_neurons_of_bert_removes_them_physically():
    model = bert()
    ids, mask = _ids()
    before = effai.profile(model, example_inputs=(ids, mask), latency=False)
    effai.prune.prune_(model, effai.prune.HeadFFNConfig(head_ratio=0.5, ffn_ratio=0.5))
    layer = model.bert.encoder.layer[0]
    assert layer.attention.self.query.out_features == D // 2 and layer.attention.output.dense.in_features == D // 2
    assert layer.intermediate.dense.out_features == FF // 2 and layer.output.dense.in_features == FF // 2
    assert model(input_ids=ids, attention_mask=mask).logits.shape == (1, 2)
    after = effai.profile(model, example_inputs=(ids, mask), latency=False)
    per_layer_saved = 2 * D * D * SEQ + SEQ * SEQ * D + D * FF * SEQ  # half of each hand-count term
    assert before.total.macs - after.total.macs == LAYERS * per_layer_saved


def test_taylor_importance_keeps_the_heads_the_loss_needs():
    from effai import data

    ds = data.load("keywords", n=200)
    model = effai.zoo.create("text_transformer").eval()
    x = ds.test.tensors[0]
    with torch.no_grad():
        full = model(x)
    effai.prune.prune_(model, effai.prune.HeadFFNConfig(0.5, 0.25, importance="taylor", data=ds, batches=2))
    assert model.blocks[1].attn.heads == 2 and model.blocks[1].ff1.out_features == 96
    assert model(x).shape == full.shape
    with pytest.raises(InputError, match="needs data"):
        effai.prune.HeadFFNConfig(importance="taylor")
    with pytest.raises(InputError, match="no attention or FFN block"):
        effai.prune.prune_(nn.Sequential(nn.Linear(4, 4)), effai.prune.HeadFFNConfig())


def _wide_last_ffn():
    """The zoo text transformer with 3 blocks, the last FFN twice as wide (256 neurons)."""
    model = effai.zoo.create("text_transformer", layers=3).eval()
    last = model.blocks[2]
    last.ff1, last.ff2 = nn.Linear(64, 256), nn.Linear(256, 64)
    return model


def test_latency_aware_head_and_ffn_allocation_spends_the_budget_where_time_is(monkeypatch):
    """Injected costs: an FFN neuron costs more the wider its layer (k^2), a head the same
    everywhere. The neuron budget (half of 128 + 128 + 256) goes first to the wide FFN (down to
    max_ratio), then evenly to the two of the same shape; heads are removed evenly."""
    from effai.prune import latency as L
    from effai.prune import transformer as T

    probed = []

    def fake(layers, threads=1):
        probed.append((threads, set(type(x).__name__ for x in layers)))
        return {x: (x.neurons ** 2 if isinstance(x, L.FFNLayer) else x.heads) * 1e-3 for x in layers}

    monkeypatch.setattr(L, "time_layers", fake)
    model = _wide_last_ffn()
    x = torch.zeros(2, 32, dtype=torch.long)
    effai.prune.prune_(model, T.HeadFFNConfig(0.5, 0.5, allocation="latency", threads=0, seq_len=32))
    assert [b.ff1.out_features for b in model.blocks] == [96, 96, 64]
    assert [b.ff2.in_features for b in model.blocks] == [96, 96, 64]
    assert [b.attn.heads for b in model.blocks] == [2, 2, 2] and model(x).shape == (2, 4)
    assert probed == [(0, {"AttentionLayer"}), (0, {"FFNLayer"})]  # at the thread count asked for
    uniform = effai.prune.prune_(_wide_last_ffn(), T.HeadFFNConfig(0.5, 0.5, allocation="uniform"))
    assert [b.ff1.out_features for b in uniform.blocks] == [64, 64, 128]
    auto = effai.prune.prune_(_wide_last_ffn(), T.HeadFFNConfig(0.5, 0.5, seq_len=32))  # small: auto is uniform
    assert [b.ff1.out_features for b in auto.blocks] == [64, 64, 128] and len(probed) == 2
    with pytest.raises(InputError, match="allocation"):
        T.HeadFFNConfig(allocation="fast")
    with pytest.raises(InputError, match="threads"):
        T.HeadFFNConfig(threads=-1)


def test_attention_and_ffn_probe_graphs_run_in_onnx_runtime():
    """The graphs the allocation times compute what the layers compute (shapes) and count the
    MACs of the hand formula."""
    import numpy as np

    from effai.profile.latency import ort_session
    from effai.prune.latency import AttentionLayer, FFNLayer

    for layer, macs in ((AttentionLayer(SEQ, D, 2, D // HEADS), 4 * SEQ * D * 32 + 2 * SEQ * SEQ * 32),
                        (FFNLayer(SEQ, D, FF), 2 * SEQ * D * FF)):
        out = ort_session(layer.onnx(), 1).run(None, {"x": np.ones(layer.in_shape, np.float32)})[0]
        assert out.shape == (1, SEQ, D) and np.isfinite(out).all() and layer.macs() == macs


def test_gpt2_conv1d_layers_are_quantized_and_the_state_dict_shrinks():
    from effai.quantize import Int8DynamicConfig, quantize_
    from effai.quantize.core import QuantLayer, state_dict_bytes

    model = gpt2()
    ids = _ids()[0]
    with torch.no_grad():
        ref = model(ids).logits
    fp32_bytes = state_dict_bytes(model)
    with pytest.warns(UserWarning, match="left in float"):  # the embeddings
        quantize_(model, Int8DynamicConfig())
    blocks = model.transformer.h
    assert all(isinstance(getattr(b.attn, n), QuantLayer) for b in blocks for n in ("c_attn", "c_proj"))
    assert all(isinstance(getattr(b.mlp, n), QuantLayer) for b in blocks for n in ("c_fc", "c_proj"))
    assert state_dict_bytes(model) < 0.6 * fp32_bytes
    with torch.no_grad():
        out = model(ids).logits
    assert float((out - ref).norm() / ref.norm()) <= 0.05


def test_quantized_transformer_encoder_runs_and_agrees_with_fp32():
    from effai.quantize import Int8DynamicConfig, quantize_
    from effai.quantize.core import QuantLayer

    model = encoder()
    x = torch.randn(2, SEQ, D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
    quantize_(model, Int8DynamicConfig())
    assert isinstance(model.layers[0].self_attn.out_proj, QuantLayer)  # MHA reads out_proj.weight and .bias
    for training in (False, True):  # eval: the QuantLayers' hooks keep torch off the fused fast path (which skips rounding)
        model.train(training)
        with torch.no_grad():
            out = model(x)
        if not training:
            assert float((out - ref).norm() / ref.norm()) <= 0.05
        assert out.shape == ref.shape and torch.isfinite(out).all()


def test_cli_exports_a_token_model_fitted_to_a_token_data_set(tmp_path):
    import json

    from typer.testing import CliRunner

    from effai.cli import app

    out = tmp_path / "tt.onnx"
    r = CliRunner().invoke(app, ["export", "text_transformer", "--dataset", "keywords", "--dtype", "fp32",
                                 "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["profile", str(out), "--no-latency", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["total"]["macs"] == effai.zoo.info("text_transformer").published_macs
