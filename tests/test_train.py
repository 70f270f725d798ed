import json
import os
import pickle

import pytest
import torch
import torch.nn as nn

from effai import data, train
from effai.errors import InputError
from effai.fileio import load_torch_file


@pytest.fixture(scope="module")
def tiny():
    return data.load("synthetic", n=300, shape=(1, 8, 8), num_classes=3)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))


def test_fit_learns_and_is_seeded(tiny):
    a = train.fit(_net(), tiny, train.TrainConfig(epochs=10, lr=1e-2, seed=1), progress=False)
    b = train.fit(_net(), tiny, train.TrainConfig(epochs=10, lr=1e-2, seed=1), progress=False)
    assert a.test_accuracy > 0.9
    assert a.history == b.history


def test_resume_continues_where_it_stopped(tiny, tmp_path):
    cfg = train.TrainConfig(epochs=4, lr=1e-2, seed=3)
    full = train.fit(_net(), tiny, cfg, out_dir=tmp_path / "full", progress=False)
    steps = {"n": 0}

    def interrupt_in_epoch_3(model):
        steps["n"] += 1
        if steps["n"] == 2 * len(tiny.loaders(cfg.batch_size)[0]) + 1:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        train.fit(_net(), tiny, cfg, out_dir=part, progress=False, after_step=interrupt_in_epoch_3)
    assert torch.load(part / "last.pt", weights_only=True)["epoch"] == 2
    resumed = train.fit(_net(), tiny, cfg, out_dir=part, progress=False)
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_run == 4
    assert resumed.history == full.history  # same seed, same result as the uninterrupted run


def test_early_stopping(tiny):
    r = train.fit(_net(), tiny, train.TrainConfig(epochs=30, patience=1, lr=1e-2), progress=False)
    assert r.epochs_run < 30


def test_bad_config():
    with pytest.raises(InputError, match="epochs=0"):
        train.TrainConfig(epochs=0)
    with pytest.raises(InputError, match="optimizer='adam'"):
        train.TrainConfig(optimizer="adam")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/effai-pwned",))


def test_pickle_payload_refused_and_never_runs(tmp_path):
    marker = "/tmp/effai-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "x": _Payload()}, path)
    with pytest.raises(InputError, match="refused to unpickle"):
        load_torch_file(path)
    assert not os.path.exists(marker)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(InputError):
        load_torch_file(raw)
    assert not os.path.exists(marker)


def test_truncated_and_empty_checkpoint(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"w": torch.randn(100, 100)}, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_torch_file(path)
    (tmp_path / "zero.pt").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_torch_file(tmp_path / "zero.pt")


def test_checkpoint_round_trip(tmp_path, tiny):
    from effai import zoo

    net = zoo.create("lenet300_100", num_classes=3, in_channels=1, resolution=8)
    r = train.fit(net, tiny, train.TrainConfig(epochs=2), out_dir=tmp_path, progress=False)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["arch"] == "lenet300_100" and meta["class_names"] == tiny.class_names
    again, _ = train.load_checkpoint(tmp_path)
    _, test_loader = tiny.loaders()[1:]
    assert train.score(again, test_loader).accuracy == pytest.approx(r.test_accuracy)


def test_nan_weights_named(tmp_path):
    from effai import zoo
    from effai.zoo.loading import load_model

    net = zoo.create("lenet5")
    sd = net.state_dict()
    first = next(iter(sd))
    sd[first].view(-1)[0] = float("nan")
    torch.save(sd, tmp_path / "sd.pt")
    with pytest.raises(InputError, match=f"'{first}' holds 1 NaN"):
        load_model(str(tmp_path / "sd.pt"), arch="lenet5")


def test_wrong_arch_names_key(tmp_path):
    from effai import zoo
    from effai.zoo.loading import load_model

    torch.save(zoo.create("lenet300_100").state_dict(), tmp_path / "sd.pt")
    with pytest.raises(InputError, match="missing key|has shape"):
        load_model(str(tmp_path / "sd.pt"), arch="lenet5")
    with pytest.raises(InputError, match="--arch"):
        load_model(str(tmp_path / "sd.pt"))


@pytest.mark.slow
def test_lenet5_mnist5k_reaches_97(mnist5k):
    """The foundation's promise: LeNet-5 on the 5,000 real MNIST images, >= 97% test accuracy."""
    from effai import zoo

    torch.manual_seed(0)
    net = zoo.create("lenet5")
    cfg = train.TrainConfig(epochs=20, lr=3e-3, batch_size=64, label_smoothing=0.1, seed=0)
    r = train.fit(net, mnist5k, cfg, progress=False)
    assert r.test_accuracy >= 0.97, r.history


def test_atomic_writes_are_ordinary_files(tmp_path):
    import stat

    from effai.fileio import write_json

    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == {"a": 1}


def test_slow_batchnorm_statistics_are_re_estimated_after_a_short_run():
    """Keras' BatchNorm momentum (PyTorch 0.01) after 10 steps would still hold mean 0 / var 1: one
    pass over the training data sets the running statistics to the data's; after 1,000 steps they stay."""
    from torch.utils.data import DataLoader, TensorDataset

    from effai.train.loop import _settle_batchnorm

    g = torch.Generator().manual_seed(0)
    x = 5 + 2 * torch.randn(512, 4, generator=g)
    loader = DataLoader(TensorDataset(x, torch.zeros(512, dtype=torch.long)), batch_size=64)
    bn = nn.BatchNorm1d(4, momentum=0.01)
    _settle_batchnorm(bn, loader, steps=1000)
    assert torch.equal(bn.running_mean, torch.zeros(4))
    _settle_batchnorm(bn, loader, steps=10)
    assert torch.allclose(bn.running_mean, x.mean(0), atol=1e-4)
    assert torch.allclose(bn.running_var, x.var(0), rtol=0.05)  # mean of per-batch variances and bn.momentum == 0.01 and bn.training
