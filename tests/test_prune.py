"""Pruning: unstructured methods and masks, structured channel removal through residual adds,
depthwise convs, concatenation, SE blocks and BatchNorm, and bad input."""

import copy

import pytest
import torch
from torch import nn

from effai import zoo
from effai.errors import InputError
from effai.prune import (
    ChannelConfig,
    MagnitudeConfig,
    OBDConfig,
    TaylorConfig,
    apply_masks,
    make_permanent,
    prune_,
    savings,
    sparsity,
)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))


@pytest.fixture(scope="module")
def tiny():
    from effai import data

    return data.load("synthetic", n=120, shape=(1, 8, 8), num_classes=2)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magnitude_hits_target_and_masks_stick(scope):
    net = _mlp()
    prune_(net, MagnitudeConfig(0.7, scope=scope))
    assert sparsity(net) == pytest.approx(0.7, abs=0.01)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # an optimizer step would revive pruned weights ...
    apply_masks(net)  # ... until the masks are re-applied
    assert sparsity(net) == pytest.approx(0.7, abs=0.01)
    make_permanent(net)
    assert not any(hasattr(m, "_effai_mask") for m in net.modules())
    assert not net._forward_hooks and not net._forward_pre_hooks
    nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2)).load_state_dict(net.state_dict())


@pytest.mark.parametrize("cfg", [OBDConfig, TaylorConfig])
def test_data_driven_scores(cfg, tiny):
    net = _mlp()
    prune_(net, cfg(0.5, data=tiny))
    assert sparsity(net) == pytest.approx(0.5, abs=0.01)


def test_filter_fn_limits_layers():
    net = _mlp()
    prune_(net, MagnitudeConfig(0.5), filter_fn=lambda m, fqn: fqn == "1")
    assert (net[1].weight == 0).float().mean() == pytest.approx(0.5, abs=0.01)
    assert (net[3].weight == 0).sum() == 0


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "half"])
def test_bad_sparsity(bad):
    with pytest.raises(InputError, match="sparsity"):
        MagnitudeConfig(bad)


def test_data_methods_need_data():
    with pytest.raises(InputError, match="data"):
        OBDConfig(0.5)


@pytest.mark.parametrize("name,shape", [("resnet18", (1, 3, 32, 32)), ("mobilenet_v2", (1, 3, 32, 32)),
                                        ("mobilenet_v3_small", (1, 3, 32, 32)), ("squeezenet1_1", (1, 3, 64, 64)),
                                        ("lenet5", (1, 1, 28, 28))])
def test_channel_pruning_keeps_graph_consistent(name, shape):
    torch.manual_seed(0)
    m = zoo.create(name, resolution=shape[-1], num_classes=10, in_channels=shape[1]).eval()
    x = torch.randn(shape)
    before = sum(p.numel() for p in m.parameters())
    prune_(m, ChannelConfig(0.5, input_shape=shape))
    assert m(x).shape == (1, 10)
    assert sum(p.numel() for p in m.parameters()) < 0.5 * before


def _inverted_residual_net():
    """A small MobileNetV2-like net: stem, an inverted residual (expand, depthwise, project) with
    a residual add, and a classifier."""

    class Block(nn.Module):
        def __init__(self, c, hidden):
            super().__init__()
            self.expand = nn.Sequential(nn.Conv2d(c, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU6())
            self.dw = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.BatchNorm2d(hidden),
                                    nn.ReLU6())
            self.project = nn.Sequential(nn.Conv2d(hidden, c, 1), nn.BatchNorm2d(c))

        def forward(self, x):
            return x + self.project(self.dw(self.expand(x)))

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), Block(32, 96), Block(32, 96),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()


def _injected_ms(layer):
    """Injected runtime cost: a depthwise conv costs 100x more per MAC than a dense one."""
    return layer.macs() * (100.0 if layer.groups > 1 else 1.0) * 1e-6


def _inject_costs(monkeypatch):
    """Replace every ONNX Runtime timing in the latency allocation with `_injected_ms`: per
    layer, and for whole models the sum over their conv/linear layers."""
    from effai.prune import latency as L

    def fake_layers(layers, threads=1, rounds=5):
        return {lay: _injected_ms(lay) for lay in layers}

    def fake_models(models, example, threads=1, rounds=5, runs=10, statistic="median"):
        return [sum(_injected_ms(v) for v in L.layers_of(m, example, [
            n for n, mm in m.named_modules() if isinstance(mm, (nn.Conv2d, nn.Linear))]).values()) for m in models]

    monkeypatch.setattr(L, "time_layers", fake_layers)
    monkeypatch.setattr(L, "measure_models", fake_models)
    return L


def test_cost_table_predicts_the_pruned_layers_exactly(monkeypatch):
    """The per-layer model the allocation plans with (which layers a group touches and their
    channel counts once it shrinks) matches the model really pruned: same conv/linear MACs."""
    from effai.prune import latency as L
    from effai.prune.graph import analyse
    from effai.prune.structured import apply_plan

    m, x = _inverted_residual_net(), torch.zeros(1, 3, 16, 16)
    dg = analyse(m, x)
    layers = L.layers_of(m, x, list(dg.inputs))
    keep = {g.root: max(1, g.size // (2 + i)) for i, g in enumerate(dg.groups)}
    predicted = sum(v.macs() for v in L.resize_layers(layers, dg, keep).values())
    pruned = apply_plan(copy.deepcopy(m), analyse(copy.deepcopy(m), x), {})  # nothing kept out: unchanged
    assert L.conv_macs(pruned, x) == sum(v.macs() for v in layers.values())
    pruned = copy.deepcopy(m)
    pdg = analyse(pruned, x)
    apply_plan(pruned, pdg, {g.root: torch.arange(keep[g.root]) for g in pdg.groups})
    assert predicted == L.conv_macs(pruned, x) < L.conv_macs(m, x)
    costs = L.group_costs(layers, dg, 0.75, 8, timer=lambda lays, threads: {v: _injected_ms(v) for v in lays})
    for c in costs:  # each probe's MACs are those of the layers the group touches at that count
        assert c.keeps[0] == next(g.size for g in dg.groups if g.root == c.root) and list(c.keeps) == sorted(c.keeps)[::-1]
        assert all(a > b for a, b in zip(c.macs, c.macs[1:], strict=False)) and all(a > b for a, b in zip(c.ms, c.ms[1:], strict=False))


def test_latency_allocation_buys_time_where_channels_cost_most(monkeypatch):
    """With injected costs (depthwise MACs 100x dearer), the latency-aware allocation spends the
    whole channel budget on the expansion channels that feed depthwise convs, within max_ratio,
    and is faster than uniform; of the candidates weighed, it keeps the fastest whose
    speedup / MAC reduction reaches `min_efficiency`."""
    from effai.prune.graph import analyse
    from effai.prune.structured import plan, weigh_allocations

    L = _inject_costs(monkeypatch)
    m, shape = _inverted_residual_net(), (1, 3, 16, 16)
    x = torch.zeros(shape)
    layers = L.layers_of(m, x, list(analyse(m, x).inputs))
    dense_ms, dense_macs = sum(_injected_ms(v) for v in layers.values()), L.conv_macs(m, x)

    def ms_of(dg, keep):
        return sum(_injected_ms(v) for v in L.resize_layers(layers, dg, keep).values())

    dg, keep = plan(copy.deepcopy(m), ChannelConfig(0.5, input_shape=shape, allocation="latency"))
    _, uniform = plan(copy.deepcopy(m), ChannelConfig(0.5, input_shape=shape, allocation="uniform"))
    assert sum(g.size - keep[g.root] for g in dg.groups) == sum(g.size for g in dg.groups) // 2  # the whole budget
    assert all(keep[g.root] >= g.size // 4 for g in dg.groups)  # max_ratio 0.75
    hidden = [g for g in dg.groups if any(k == "dw" for k, _, _ in g.members)]
    assert hidden and all(keep[g.root] == g.size for g in dg.groups if g not in hidden)  # depthwise-fed first
    assert ms_of(dg, keep) < ms_of(dg, uniform)
    for floor in (0.85, 1.02, 1.99):
        weighed = weigh_allocations(copy.deepcopy(m), dg, ChannelConfig(0.5, input_shape=shape, min_efficiency=floor))
        assert len({a.label for a in weighed}) == len(weighed) >= 2 and sum(a.chosen for a in weighed) == 1
        for a in weighed:  # what was weighed is what the injected runtime says
            assert a.latency_ms == pytest.approx(ms_of(dg, a.keep))
            assert a.efficiency == pytest.approx((dense_ms / a.latency_ms) / (dense_macs / a.macs))
        chosen = next(a for a in weighed if a.chosen)
        good = [a for a in weighed if a.efficiency >= floor]
        assert chosen == (min(good, key=lambda a: a.latency_ms) if good else max(weighed, key=lambda a: a.efficiency))


def test_auto_allocation_measures_big_models_only(monkeypatch):
    from effai.prune import structured as S

    small = _inverted_residual_net()
    assert ChannelConfig().allocation == "auto"
    assert S.allocation_of(small, ChannelConfig(0.5, input_shape=(1, 3, 16, 16))) == "uniform"
    monkeypatch.setattr(S, "AUTO_MIN_MACS", 1000)
    assert S.allocation_of(small, ChannelConfig(0.5, input_shape=(1, 3, 16, 16))) == "latency"
    assert S.allocation_of(small, ChannelConfig(0.5, input_shape=(1, 3, 16, 16), allocation="uniform")) == "uniform"
    called = []
    monkeypatch.setattr(S, "latency_allocation", lambda model, dg, config: called.append(1) or {
        g.root: g.size for g in dg.groups})
    prune_(small, ChannelConfig(0.5, input_shape=(1, 3, 16, 16)))
    assert called == [1]


@pytest.mark.parametrize("field,bad", [("allocation", "fast"), ("threads", -1), ("threads", 1.5),
                                       ("min_efficiency", -0.1)])
def test_bad_latency_options(field, bad):
    with pytest.raises(InputError, match=field):
        ChannelConfig(0.5, **{field: bad})


def test_latency_allocation_prunes_a_real_network():
    torch.manual_seed(0)
    shape = (1, 3, 32, 32)
    m = zoo.create("mobilenet_v1", resolution=32, num_classes=10, width_mult=0.25).eval()
    x = torch.randn(shape)
    from effai.prune.structured import plan

    dg, keep = plan(copy.deepcopy(m), ChannelConfig(0.5, input_shape=shape, allocation="latency", round_to=4))
    total = sum(g.size for g in dg.groups)
    removed = sum(g.size - keep[g.root] for g in dg.groups)
    assert 0.45 * total <= removed <= 0.55 * total  # the channel budget is spent (up to rounding)
    assert all(keep[g.root] >= g.size * 0.25 - 4 for g in dg.groups)  # max_ratio 0.75 respected
    before = sum(p.numel() for p in m.parameters())
    prune_(m, ChannelConfig(0.5, input_shape=shape, allocation="latency", round_to=4))
    assert m(x).shape == (1, 10) and sum(p.numel() for p in m.parameters()) < before


def test_removing_dead_channels_changes_nothing():
    """Channels whose conv filter, bias and BN shift are zero carry nothing: removing them
    through a residual add must leave the output unchanged."""

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.c1 = nn.Conv2d(8, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            x = torch.relu(self.bn(self.stem(x)))
            x = x + self.c2(torch.relu(self.c1(x)))
            return self.head(x.mean((2, 3)))

    torch.manual_seed(0)
    m = Res().eval()
    with torch.no_grad():
        for conv in (m.stem, m.c2):  # the residual space: channels 4..7 dead on both producers
            conv.weight[4:] = 0
            conv.bias[4:] = 0
        m.bn.bias[4:] = 0
        m.bn.running_mean[4:] = 0
        m.c1.weight[4:] = 0
        m.c1.bias[4:] = 0
    x = torch.randn(2, 3, 8, 8)
    ref = m(x)
    prune_(m, ChannelConfig(0.5, input_shape=(1, 3, 8, 8)))
    assert m.stem.out_channels == m.c2.out_channels == m.c1.in_channels == 4 and m.head.in_features == 4
    torch.testing.assert_close(m(x), ref)


def test_concat_and_depthwise():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(3, 8, 1)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.out = nn.Conv2d(16, 4, 1)

        def forward(self, x):
            return self.out(self.dw(torch.cat([self.a(x), self.b(x)], 1)))

    m = Net().eval()
    prune_(m, ChannelConfig(0.5, input_shape=(1, 3, 8, 8)))
    assert (m.a.out_channels, m.b.out_channels, m.dw.groups, m.out.in_channels) == (4, 4, 8, 8)
    assert m(torch.zeros(1, 3, 8, 8)).shape == (1, 4, 8, 8)


@pytest.mark.parametrize("imp", ["l2", "bn_scale"])
def test_importances(imp):
    m = zoo.create("resnet8", num_classes=10).eval()
    prune_(m, ChannelConfig(0.25, importance=imp, input_shape=(1, 3, 32, 32), round_to=8))
    assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert all(c.out_channels % 8 == 0 for c in m.modules() if isinstance(c, nn.Conv2d))


def test_ratio_leaving_zero_channels_names_layer():
    m = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Conv2d(2, 4, 3))
    with pytest.raises(InputError, match=r"'0'.*0 of its 2 channels"):
        prune_(m, ChannelConfig(0.9, input_shape=(1, 3, 8, 8)))


@pytest.mark.parametrize("bad", [1.0, -0.5])
def test_bad_ratio(bad):
    with pytest.raises(InputError, match="ratio"):
        ChannelConfig(bad)


def test_untraceable_graph_names_layer():
    class Gate(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow

    m = nn.Sequential(nn.Conv2d(3, 8, 3), Gate(), nn.Conv2d(8, 4, 3))
    with pytest.raises(InputError, match="layer '1'"):
        prune_(m, ChannelConfig(0.5, input_shape=(1, 3, 8, 8)))


def test_channel_reshuffle_is_refused_with_layer_name():
    class Shuffle(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.head = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = self.conv(x)
            return self.head(y.view(1, 2, 4, 8, 8).transpose(1, 2).reshape(1, 8, 8, 8))

    with pytest.raises(InputError, match="view"):
        prune_(Shuffle(), ChannelConfig(0.5, input_shape=(1, 3, 8, 8)))


def test_savings_warns_when_masks_do_not_help():
    a = _mlp()
    b = prune_(copy.deepcopy(a), MagnitudeConfig(0.9))
    make_permanent(b)
    with pytest.warns(UserWarning, match="not faster"):
        rep = savings(a, b, torch.zeros(1, 1, 8, 8), rounds=2, runs=5, min_speedup=10.0)
    assert rep.faster is False and rep.sparse_bytes_after < rep.dense_bytes_before
    assert rep.smaller and rep.to_dict()["mac_reduction"] == pytest.approx(1.0)


def test_gradual_reaches_target(tiny):
    from effai.prune import gradual
    from effai.train import TrainConfig

    net = _mlp()
    r = gradual(net, tiny, MagnitudeConfig(0.8), train_config=TrainConfig(epochs=3))
    assert sparsity(net) == pytest.approx(0.8, abs=0.01) and r.epochs_run == 3
