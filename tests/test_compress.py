"""Deep Compression: sharing keeps weights tied through fine-tuning, the .effdc file restores
them bit for bit (and so the accuracy), the recipe is validated, the CLI runs."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from effai.compress import DeepCompressionConfig, deep_compression, huffman, load_compressed, save_compressed
from effai.compress.format import decode_shared, encode_shared
from effai.compress.share import share_, tie_gradients
from effai.errors import InputError


@pytest.fixture(scope="module")
def tiny():
    from effai import data

    return data.load("synthetic", n=200, shape=(1, 8, 8), num_classes=3)


def test_huffman_roundtrip_skewed():
    rng = np.random.default_rng(0)
    sym = rng.geometric(0.3, 3000).clip(max=40) - 1
    ls = huffman.code_lengths(np.bincount(sym, minlength=41))
    assert ls.max() <= 15
    enc = huffman.encode(sym, ls)
    assert len(enc) < len(sym) * 6 / 8  # beats fixed 6-bit codes
    assert (huffman.decode(enc, ls, len(sym)) == sym).all()
    assert (huffman.unpack_lengths(huffman.pack_lengths(ls), 41) == ls).all()


def test_relative_index_fillers_roundtrip():
    w = np.zeros((4, 300), np.float32)
    w[0, 0], w[1, 10], w[3, 299] = 0.5, -0.25, 0.5  # gaps far beyond 2**5 - 1: filler zeros
    entry, blob, st = encode_shared(w, 5)
    assert st["fillers"] > 0 and st["nonzero"] == 3
    assert np.array_equal(decode_shared(entry, blob, w.shape, "w"), w)


def test_shared_weights_stay_shared_through_finetuning(tiny):
    from effai.train import TrainConfig, fit

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        net[1].weight[:, ::2] = 0
    idx = share_(net[1], bits=3)
    h = tie_gradients(net[1], idx)
    before = net[1].weight.clone()
    fit(net, tiny, TrainConfig(epochs=2, lr=1e-2), progress=False)
    h.remove()
    w = net[1].weight.detach()
    assert not torch.equal(w, before)
    assert len(torch.unique(w[w != 0])) <= 8 and (w[:, ::2] == 0).all()
    for k in range(int(idx.max()) + 1):  # every cluster still holds one value
        assert len(torch.unique(w[idx == k])) == 1


def test_deep_compression_file_reloads_to_same_accuracy(tiny, tmp_path):
    from effai.train import TrainConfig, fit, score

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 32), nn.ReLU(),
                        nn.Linear(32, 3))
    fit(net, tiny, TrainConfig(epochs=3), progress=False)
    cfg = DeepCompressionConfig(sparsity=0.8, prune_epochs=2, finetune_epochs=1)
    path = tmp_path / "m.effdc"
    net, rep = deep_compression(net, tiny, cfg, out_path=path)
    assert [s["stage"] for s in rep.stages][-1] == "Huffman-coded file"
    assert rep.stages[-1]["bytes"] == path.stat().st_size and rep.ratio > 5
    fresh = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 32), nn.ReLU(),
                          nn.Linear(32, 3))
    back = load_compressed(path, model=fresh)
    for a, b in zip(net.state_dict().values(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    test = tiny.loaders()[2]
    assert score(back, test).accuracy == score(net, test).accuracy == rep.stages[-1]["accuracy"]
    assert not any(hasattr(m, "_effai_mask") for m in net.modules())


def test_zoo_model_roundtrip_without_pickle(tmp_path):
    from effai import zoo

    m = zoo.create("lenet5")
    save_compressed(m, tmp_path / "l.effdc", arch="lenet5")
    assert b"\x80" not in (tmp_path / "l.effdc").read_bytes()[:2]  # not a pickle stream
    back = load_compressed(tmp_path / "l.effdc")  # architecture from the file
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values(), strict=True))


def test_corrupt_files(tmp_path):
    p = tmp_path / "x.effdc"
    p.write_bytes(b"not a file")
    with pytest.raises(InputError, match="bad magic"):
        load_compressed(p, model=nn.Linear(2, 2))
    save_compressed(nn.Linear(8, 4), p)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated"):
        load_compressed(p, model=nn.Linear(8, 4))


def test_bad_config():
    with pytest.raises(InputError, match="sparsity"):
        DeepCompressionConfig(sparsity=1.2)
    with pytest.raises(InputError, match="fc_bits"):
        DeepCompressionConfig(fc_bits=0)


def test_recipe_errors_name_file_line_field(tmp_path):
    from effai.compress.recipe import load_recipe

    p = tmp_path / "r.yaml"
    p.write_text("sparsity: 0.9\nprune_epochs: 3\nbogus: 1\n")
    with pytest.raises(InputError, match=r"r.yaml:3: bogus"):
        load_recipe(p)
    p.write_text("sparsity: lots\n")
    with pytest.raises(InputError, match=r"r.yaml:1: sparsity"):
        load_recipe(p)


def test_cli_compress(tmp_path):
    from typer.testing import CliRunner

    from effai.cli import app

    r = tmp_path / "recipe.yaml"
    r.write_text("dataset: synthetic\ntrain_epochs: 1\nsparsity: 0.5\nprune_epochs: 1\nfinetune_epochs: 0\n")
    res = CliRunner().invoke(app, ["compress", "lenet300_100", "--recipe", str(r), "--out", str(tmp_path / "o"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["stages"][-1]["stage"] == "Huffman-coded file" and (tmp_path / "o" / "model.effdc").exists()
