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
    return layer.macs() * (100.0 if layer.depthwise else 1.0) * 1e-6


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
    layers = L.layers_of(m, x, L.conv_layers(m))
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
    from effai.prune.structured import plan, weigh_allocations

    L = _inject_costs(monkeypatch)
    m, shape = _inverted_residual_net(), (1, 3, 16, 16)
    x = torch.zeros(shape)
    layers = L.layers_of(m, x, L.conv_layers(m))
    dense_ms, dense_macs = sum(_injected_ms(v) for v in layers.values()), L.conv_macs(m, x)

    def ms_of(dg, keep):
        return sum(_injected_ms(v) for v in L.resize_layers(layers, dg, keep).values())

    dg, keep = plan(copy.deepcopy(m), ChannelConfig(0.5, input_shape=shape, allocation="latency"))
    _, uniform = plan(copy.deepcopy(m), ChannelConfig(0.5, input_shape=shape, allocation="uniform"))
    assert sum(g.size - keep[g.root] for g in dg.groups) == sum(g.size for g in dg.groups) // 2  # the whole budget
    assert all(keep[g.root] >= g.size // 4 for g in dg.groups)  # max_ratio 0.75
    hidden = [g for g in dg.groups if any(getattr(mem.module, "groups", 1) > 1 for mem in g.members)]
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


def test_latency_allocation_probes_at_the_thread_count_asked_for(monkeypatch):
    """threads=0 (ONNX Runtime's default) reaches every timing of the allocation, and the
    sessions it opens run one thread per physical core, set explicitly (unpinned workers)."""
    import numpy as np

    from effai.profile.latency import ort_session, physical_cores
    from effai.prune.graph import analyse
    from effai.prune.latency import FFNLayer
    from effai.prune.structured import weigh_allocations

    L = _inject_costs(monkeypatch)
    seen = []
    fake_layers, fake_models = L.time_layers, L.measure_models
    monkeypatch.setattr(L, "time_layers", lambda lays, threads=1: seen.append(("layers", threads)) or fake_layers(lays))
    monkeypatch.setattr(L, "measure_models", lambda models, x, threads=1, **kw: seen.append(("models", threads))
                        or fake_models(models, x))
    m, shape = _inverted_residual_net(), (1, 3, 16, 16)
    dg = analyse(m, torch.zeros(shape))
    weigh_allocations(m, dg, ChannelConfig(0.5, input_shape=shape, allocation="latency", threads=0))
    assert seen == [("layers", 0), ("models", 0)]
    monkeypatch.undo()  # the real timers again: which clock each thread count is timed with
    from effai.profile import latency as P

    clocks = []
    real = P.interleaved
    monkeypatch.setattr(P, "interleaved", lambda calls, **kw: clocks.append(kw["clock"]) or real(calls, **kw))
    L.measure_models([nn.Linear(4, 2)], torch.zeros(1, 4), threads=1, rounds=1, runs=1)
    L.measure_models([nn.Linear(4, 2)], torch.zeros(1, 4), threads=0, rounds=1, runs=1)
    L.time_layers([FFNLayer(4, 8, 16)], threads=1, rounds=1)
    assert clocks == ["thread_cpu", "wall", "thread_cpu"]  # 1 thread: the caller's CPU time; more: wall
    layer = FFNLayer(4, 8, 16)
    for asked, runs in ((0, physical_cores()), (1, 1), (2, 2)):
        sess = ort_session(layer.onnx(), asked)
        assert sess.get_session_options().intra_op_num_threads == runs
        assert sess.run(None, {"x": np.ones(layer.in_shape, np.float32)})[0].shape == (1, 4, 8)


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


def test_group_l1_ranks_a_channel_by_the_weights_it_feeds():
    """Behind a BatchNorm a filter's norm says little: group_l1 drops the channel whose outgoing
    weights (consumer columns) and gamma are zero even though its filter is the largest; l1 keeps it."""
    from effai.prune.graph import analyse
    from effai.prune.structured import channel_indices

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3)).eval()
    with torch.no_grad():
        net[0].weight.fill_(0.1)
        net[0].weight[2] = 0.15  # the largest filter ...
        net[1].weight[2] = 0  # ... scaled to nothing by its BatchNorm
        net[3].weight.fill_(0.1)
        net[3].weight[:, 2] = 0  # ... and read by nobody downstream
    dg = analyse(net, torch.zeros(1, 3, 8, 8))
    (g,) = dg.groups
    assert 2 in channel_indices(g, 3, "l1").tolist()
    assert 2 not in channel_indices(g, 3, "group_l1", dg=dg).tolist()
    prune_(net, ChannelConfig(0.25, importance="group_l1", input_shape=(1, 3, 8, 8), allocation="uniform"))
    assert net[0].out_channels == net[3].in_channels == 3


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


class _ScaledConv(nn.Module):
    """A custom layer torch.fx would trace through: a 1x1 conv with a learned per-filter gain."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 1, 1))
        self.gain = nn.Parameter(torch.rand(cout) + 0.5)

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight) * self.gain[:, None, None]


@pytest.fixture
def scaled_conv_handler():
    """Registers a layer handler for _ScaledConv the way a contributor would, and removes it after."""
    from effai.prune.layers import LAYERS, LayerHandler, register_layer, slice_param

    @register_layer(_ScaledConv)
    class ScaledConvHandler(LayerHandler):
        produces_channels = True

        def connect(self, a, call):
            x = a.along(call.x, 1, call.in_shape, call.fqn)
            a.consume(call, x)
            return a.produce(call, dim=1)

        def prune_out(self, layer, idx):
            slice_param(layer, "weight", 0, idx)
            slice_param(layer, "gain", 0, idx)

        def prune_in(self, layer, idx):
            slice_param(layer, "weight", 1, idx)

        def filters(self, layer):
            return layer.weight * layer.gain[:, None, None, None]

    yield ScaledConvHandler
    del LAYERS[_ScaledConv]


def test_a_registered_handler_prunes_a_custom_layer(scaled_conv_handler):
    from effai.prune import prunable

    torch.manual_seed(0)
    m = nn.Sequential(_ScaledConv(3, 8), nn.BatchNorm2d(8), nn.ReLU(), _ScaledConv(8, 4)).eval()
    assert prunable(m[0])
    with torch.no_grad():  # channels 0..3 of the first layer carry nothing: they must be the ones removed
        m[0].weight[:4] = 0
        m[1].bias[:4] = 0
        m[1].running_mean[:4] = 0
    x = torch.randn(2, 3, 5, 5)
    ref = m(x)
    prune_(m, ChannelConfig(0.5, input_shape=(1, 3, 5, 5)))
    assert m[0].weight.shape[0] == m[0].gain.shape[0] == m[1].num_features == m[3].weight.shape[1] == 4
    assert m[3].weight.shape[0] == 4  # the model's output channels are pinned
    torch.testing.assert_close(m(x), ref)


def test_a_layer_without_handler_is_refused_by_name():
    class Mix(nn.Module):  # a custom module is traced through: its .roll() mixes channels
        def forward(self, x):
            return x.roll(1, dims=1)

    m = nn.Sequential(nn.Conv2d(3, 8, 1), Mix(), nn.Conv2d(8, 4, 1))
    with pytest.raises(InputError, match="unsupported method .roll"):
        prune_(m, ChannelConfig(0.5, input_shape=(1, 3, 4, 4)))
    m = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ChannelShuffle(2), nn.Conv2d(8, 4, 1))  # a torch.nn leaf
    with pytest.raises(InputError, match="layer '1': unsupported layer type ChannelShuffle"):
        prune_(m, ChannelConfig(0.5, input_shape=(1, 3, 4, 4)))


def test_duplicate_layer_handler_is_refused():
    from effai.prune.layers import LayerHandler, register_layer
    from effai.registry import DuplicateRegistration

    with pytest.raises(DuplicateRegistration, match="Conv2d is already registered"):
        register_layer(nn.Conv2d)(LayerHandler)


def test_prunable_agrees_with_the_analysis():
    """Every layer the default filter selects is one the channel analysis can prune (Conv3d included)."""
    from effai.prune import prunable

    m = nn.Sequential(nn.Conv3d(2, 8, 1), nn.BatchNorm3d(8), nn.ReLU(), nn.Conv3d(8, 4, 1)).eval()
    assert prunable(m[0]) and not prunable(m[1])
    prune_(m, ChannelConfig(0.5, input_shape=(1, 2, 3, 3, 3)))
    assert (m[0].out_channels, m[1].num_features, m[3].in_channels) == (4, 4, 4)
    assert m(torch.zeros(1, 2, 3, 3, 3)).shape == (1, 4, 3, 3, 3)


def test_linear_on_tokens_prunes_the_hidden_features():
    """Channels on the last axis: a transformer-style MLP on (N, L, d) tokens loses half its hidden units."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 8)).eval()
    x = torch.randn(2, 5, 8)
    with torch.no_grad():  # hidden units 16..31 are dead: removing them changes nothing
        m[0].weight[16:] = 0
        m[0].bias[16:] = -1.0
        m[2].weight[:, 16:] = 0
    ref = m(x)
    prune_(m, ChannelConfig(0.5, input_shape=(1, 5, 8)))
    assert (m[0].out_features, m[2].in_features, m[2].out_features) == (16, 16, 8)
    torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)


def test_a_layer_called_twice_keeps_both_inputs_consistent():
    """One grouped conv applied to two tensors: both inputs stay whole (its groups fix them), which
    leaves nothing to prune; one dense conv applied to two tensors: their channels go together."""

    class Twice(nn.Module):
        def __init__(self, groups):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)
            self.shared = nn.Conv2d(8, 8, 1, groups=groups)
            self.head = nn.Conv2d(16, 4, 1)

        def forward(self, x):
            return self.head(torch.cat([self.shared(self.a(x)), self.shared(self.b(x))], 1))

    with pytest.raises(InputError, match="no channel group can be pruned"):  # b's channels too are fixed
        prune_(Twice(groups=2).eval(), ChannelConfig(0.5, input_shape=(1, 3, 4, 4)))
    dense = Twice(groups=1).eval()
    prune_(dense, ChannelConfig(0.5, input_shape=(1, 3, 4, 4)))
    assert (dense.a.out_channels, dense.b.out_channels, dense.shared.in_channels) == (4, 4, 4)
    assert dense(torch.zeros(1, 3, 4, 4)).shape == (1, 4, 4, 4)


def test_padding_the_feature_axis_of_a_vector_is_refused():
    class Pad(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(10, 2)

        def forward(self, x):
            return self.fc2(torch.nn.functional.pad(self.fc1(x), (1, 1)))

    with pytest.raises(InputError, match="holds the channels"):
        prune_(Pad(), ChannelConfig(0.5, input_shape=(1, 4)))
