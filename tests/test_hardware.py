"""effai.hardware: catalogue validation, fit facts, roofline estimates, host calibration, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import effai
import effai.hardware as hw
from effai import zoo
from effai.errors import CheckFailed, InputError
from effai.hardware.catalogue import parse_catalogue


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFAI_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def profiles():
    out = {}
    for key, name, opts in [("vww", "mobilenet_v1_025_vww", {}),
                            ("mnv1_025_128", "mobilenet_v1", {"width_mult": 0.25, "resolution": 128}),
                            ("mnv1_224", "mobilenet_v1", {"width_mult": 1.0, "resolution": 224}),
                            ("lenet5", "lenet5", {})]:
        shape = (1, *zoo.input_shape(name, **{k: v for k, v in opts.items() if k == "resolution"}))
        out[key] = effai.profile(zoo.create(name, **opts), input_shape=shape, latency=False, energy=False, name=key)
    return out


# ------------------------------------------------------------------ catalogue
def test_catalogue_has_the_issue_targets_with_sources():
    cat = hw.load_catalogue()
    for name in ["t4", "a100", "h100", "tpu_v4", "coral_edgetpu", "jetson_orin_nano", "rpi4", "rpi5", "phone_npu",
                 "nano33ble", "stm32f746", "esp32s3", "loihi2", "photonic", "host"]:
        assert name in cat, name
    nano = cat["nano33ble"]
    assert nano.ram.value == 256 * 1024 and nano.storage.value == 1024 * 1024 and nano.weights_in == "storage"
    assert cat["stm32f746"].ram.value == 320 * 1024
    edge = cat["edgetpu"]  # alias
    assert edge.name == "coral_edgetpu" and edge.dtypes == ["int8"]
    assert edge.peak("int8") == 4e12 and edge.power.peak.value == 2.0
    assert cat["loihi2"].status == "research_estimate" and cat["photonic"].status == "research_estimate"
    for name in cat.names():
        if name == "host":
            continue
        spec = cat[name].spec
        for q in [*spec.peak_ops.values(), spec.memory_bandwidth, spec.ram, spec.power.idle, spec.power.peak]:
            assert len(q.source) > 3
        assert spec.efficiency.source


def test_units_parse():
    from effai.hardware.catalogue import parse_quantity

    assert parse_quantity("68 GB/s", "B/s") == 68e9
    assert parse_quantity("1 MiB", "B") == 2**20
    assert parse_quantity("0.2 pJ", "J") == pytest.approx(2e-13)
    with pytest.raises(ValueError, match="not a B unit"):
        parse_quantity("4 TOPS", "B")


GOOD = """\
mychip:
  title: My chip
  kind: mcu
  dtypes: [int8]
  peak_ops:
    int8: {value: 1 GOPS, source: "my datasheet"}
  memory_bandwidth: {value: 1 GB/s, source: "my datasheet"}
  ram: {value: 128 KiB, source: "my datasheet"}
  storage: {value: 512 KiB, source: "my datasheet"}
  weights_in: storage
  power:
    idle: {value: 1 mW, source: "my datasheet"}
    peak: {value: 50 mW, source: "my datasheet"}
  price:
    per_unit: {value: 3 USD, source: "distributor"}
  efficiency: {compute: 0.5, memory: 0.5, source: "guess"}
"""


def test_user_catalogue_extends_builtin(tmp_path, profiles):
    f = tmp_path / "mine.yaml"
    f.write_text(GOOD)
    cat = hw.load_catalogue(extra=[f])
    assert cat["mychip"].ram.value == 128 * 1024 and "nano33ble" in cat
    rep = hw.fit(profiles["vww"], "mychip", dtype="int8", catalogue=cat)
    assert rep.fits and {c.name for c in rep.checks} == {"dtype", "ram", "storage"}


@pytest.mark.parametrize("text, line, field", [
    (GOOD.replace("int8: {value: 1 GOPS", "int8: {value: fast"), 6, "mychip.peak_ops.int8.value"),  # bad type
    (GOOD.replace("  weights_in: storage\n", "  weights_in: storage\n  colour: red\n"), 11, "mychip.colour"),  # unknown
    (GOOD.replace("  kind: mcu\n", "  kind: mcu\n  kind: gpu\n"), 4, "duplicate key 'kind'"),  # duplicate key
    (GOOD.replace("dtypes: [int8]", "dtypes: [int8"), None, "YAML syntax error"),  # syntax
    (GOOD.replace("kind: mcu", "kind: toaster"), 3, "mychip.kind"),  # bad enum
    (GOOD.replace("  ram: {value: 128 KiB, source: \"my datasheet\"}\n", ""), 1, "mychip.ram: field required"),
])
def test_malformed_catalogue_names_file_line_and_field(tmp_path, text, line, field):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(InputError) as e:
        hw.load_catalogue(extra=[f])
    msg = str(e.value)
    assert str(f) in msg and field in msg and "\n" not in msg
    if line is not None:
        assert msg.startswith(f"{f}:{line}:"), msg
    else:
        assert msg.startswith(f"{f}:") and msg.split(":")[1].isdigit()


def test_catalogue_other_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        hw.load_catalogue(extra=[tmp_path / "nope.yaml"])
    with pytest.raises(InputError, match="reserved"):
        parse_catalogue(GOOD.replace("mychip:", "host:"), "x.yaml")
    with pytest.raises(InputError, match=r"x.yaml:1: expected a mapping"):
        parse_catalogue("- a\n- b\n", "x.yaml")
    with pytest.raises(InputError, match="peak_ops has no entry"):
        parse_catalogue(GOOD.replace("dtypes: [int8]", "dtypes: [int8, fp32]"), "x.yaml")
    with pytest.raises(InputError, match=r"unknown target 'nano33bel'; did you mean: nano33ble"):
        hw.load_catalogue()["nano33bel"]


# ------------------------------------------------------------------ fit: the three facts
def test_mobilenet_v1_025_fits_256kb_mcu_in_int8(profiles):
    for key in ("vww", "mnv1_025_128"):
        rep = hw.fit(profiles[key], "nano33ble", dtype="int8")
        assert rep.fits, rep.verdict()
        ram = next(c for c in rep.checks if c.name == "ram")
        assert 0 < ram.required < 256 * 1024 and ram.margin > 0
    assert not hw.fit(profiles["vww"], "nano33ble").fits  # the fp32 model does not (activations x4)


def test_mobilenet_v1_224_does_not_fit_mcu(profiles):
    rep = hw.fit(profiles["mnv1_224"], "nano33ble", dtype="int8")
    assert not rep.fits
    assert {c.name for c in rep.failed()} == {"ram", "storage"}
    storage = next(c for c in rep.checks if c.name == "storage")
    assert storage.required > 4.2e6 and storage.margin < 0  # 4.2M int8 weights + scales + runtime code
    assert "does not fit" in rep.verdict()


def test_edgetpu_refuses_float_models(profiles):
    rep = hw.fit(profiles["lenet5"], "edgetpu")
    assert rep.dtype == "fp32" and not rep.fits
    assert [c.name for c in rep.failed()] == ["dtype"]
    assert hw.fit(profiles["lenet5"], "edgetpu", dtype="int8").fits
    with pytest.raises(InputError, match="does not run fp32"):
        hw.estimate(profiles["lenet5"], "edgetpu")


def test_fit_accounting_and_validation(profiles):
    p = profiles["lenet5"]
    q = hw.fit(p, "stm32f746", dtype="int8")
    f = hw.fit(p, "stm32f746", dtype="fp32")
    sq, sf = (next(c for c in r.checks if c.name == "storage") for r in (q, f))
    code = 128 * 1024
    assert sf.required - code == pytest.approx(4 * p.total.params, rel=0.01)
    assert p.total.params < sq.required - code < 1.1 * p.total.params  # int8 + per-channel scale/bias
    arena = hw.fit(p, "stm32f746", dtype="int8", runtime_arena_bytes=0)
    assert next(c for c in arena.checks if c.name == "ram").required < next(c for c in q.checks if c.name == "ram").required
    d = q.to_dict()
    assert d["fits"] is True and d["checks"][1]["margin"] > 0
    with pytest.raises(InputError, match="dtype"):
        hw.fit(p, "stm32f746", dtype="int7")
    with pytest.raises(InputError, match="profile"):
        hw.fit(object(), "stm32f746")
    with pytest.raises(InputError, match="runtime_arena_bytes"):
        hw.fit(p, "stm32f746", runtime_arena_bytes=-1)


# ------------------------------------------------------------------ estimate
def test_estimate_roofline_labelled_and_costed(profiles):
    p = profiles["vww"]
    e = hw.estimate(p, "stm32f746", dtype="int8")
    assert e.method == "estimate" and "roofline" in e.model_used
    assert e.latency_ms == pytest.approx(sum(lay.latency_ms for lay in e.layers))
    assert e.bound_counts.get("fused", 0) > 0  # BatchNorm and ReLU fused on a deployment target
    assert e.energy_j > 0 and e.kg_co2_per_million == pytest.approx(e.energy_j / 3.6e6 * 0.475 * 1e6)
    assert e.usd_per_million > 0 and "amortised" in e.usd_method
    g = hw.estimate(p, "t4", dtype="int8", grid_kg_per_kwh=0.1)
    assert "rental" in g.usd_method and g.grid_source == "given"
    assert g.latency_ms < e.latency_ms
    # a layer's bound is compute when ops/peak dominates
    big = SimpleNamespace(name="mm", type="Linear", output_shape=[512, 4096], params=4096 * 4096, macs=512 * 4096 * 4096,
                          elementwise_flops=0, activation_bytes=512 * 4096 * 4, calls=1)
    fake = SimpleNamespace(model="mm", input_shape=[512, 4096], dtype="float32", layers=[big],
                           total=SimpleNamespace(params=big.params, macs=big.macs, peak_activation_bytes=0))
    lay = hw.estimate(fake, "t4", dtype="int8").layers[0]
    assert lay.bound == "compute" and lay.compute_ms > lay.memory_ms
    research = hw.estimate(p, "loihi2", dtype="int8")
    assert research.status == "research_estimate" and "pJ/op" in research.energy_method
    assert any("research" in a for a in research.assumptions)
    assert json.dumps(e.to_dict())


def test_estimate_validation(profiles):
    with pytest.raises(InputError, match="grid_kg_per_kwh"):
        hw.estimate(profiles["lenet5"], "t4", grid_kg_per_kwh=-1)
    with pytest.raises(InputError, match="power_w"):
        hw.estimate(profiles["lenet5"], "t4", power_w=0)
    with pytest.raises(InputError, match="unknown target"):
        hw.estimate(profiles["lenet5"], "t5")


# ------------------------------------------------------------------ host
def test_host_quick_calibration_and_error_report():
    tgt = hw.host_target(quick=True, cache=False)
    cal = tgt.calibration
    assert cal["quick"] and cal["peak_ops"]["fp32"] > 0 and cal["memory_bandwidth"] > 0
    assert set(cal["kernel_overhead_s"]) >= {"conv", "depthwise", "linear", "pool", "other"}
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    p = effai.profile(m, input_shape=(1, 1, 8, 8), repeats=3, warmup=1, min_seconds=0, energy=False)
    e = hw.estimate(p, tgt)
    assert e.target == "host" and e.method == "estimate" and e.measured_ms == p.latency.p50_ms
    assert e.error_pct == pytest.approx(100 * (e.latency_ms - e.measured_ms) / e.measured_ms)
    assert e.energy_j is None and "unknown" in e.energy_method  # no power counters here
    assert hw.estimate(p, tgt, power_w=10).energy_j > 0
    with pytest.raises(InputError, match="clock"):
        hw.calibrate_host(quick=True, cache=False, clock="sundial")


def test_host_calibration_is_cached(monkeypatch, tmp_path):
    import effai.hardware.host as host

    calls = []
    fake = {"peak_ops": {"fp32": 1e11}, "int8_method": "none", "memory_bandwidth": 1e10,
            "bandwidth_curve": [[2**18, 5e10], [2**28, 1e10]], "kernels": {"conv": 0.9, "depthwise": 0.3},
            "kernel_ops_per_s": {}, "kernel_overhead_s": {"conv": 1e-5, "other": 2e-6}, "points": {}}
    monkeypatch.setattr(host, "_measure", lambda quick: calls.append(quick) or dict(fake))
    a = host.calibrate_host(threads=1)
    b = host.calibrate_host(threads=1)
    assert calls == [False] and a == b
    assert json.loads((tmp_path / "cache" / "host.json").read_text())
    host.calibrate_host(threads=1, recalibrate=True)
    assert len(calls) == 2
    t = host.host_target(threads=1)
    assert t.peak("fp32") == 1e11 and t.spec.efficiency.kernel_overhead_s["conv"] == 1e-5


# ------------------------------------------------------------------ CLI
def _run(args):
    from typer.testing import CliRunner

    from effai.cli import app

    return CliRunner().invoke(app, args, catch_exceptions=True)


def test_cli_targets_json():
    r = _run(["targets", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    names = {x["name"] for x in rows}
    assert {"nano33ble", "coral_edgetpu", "host"} <= names


def _main(args, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run `effai ARGS` in-process through `main` (the exit-code mapping), return (code, out, err)."""
    import sys

    from effai.cli import main

    monkeypatch.setattr(sys, "argv", ["effai", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return e.value.code or 0, out, err


def test_cli_fit_verdicts(tmp_path, monkeypatch, capsys):
    code, out, err = _main(["fit", "lenet5", "--target", "nano33ble", "--dtype", "int8", "--json"], monkeypatch, capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["fit"]["fits"] and res["estimate"]["method"] == "estimate"
    code, out, err = _main(["fit", "lenet5", "--target", "edgetpu"], monkeypatch, capsys)
    assert code == 1 and "does not fit" in err and "dtype fp32" in err
    code, out, err = _main(["fit", "lenet5", "--target", "nano33bel"], monkeypatch, capsys)
    assert code == 2 and "did you mean: nano33ble" in err
    broken = tmp_path / "b.yaml"
    broken.write_text("x:\n  title: [\n")
    code, out, err = _main(["targets", "--catalogue", str(broken)], monkeypatch, capsys)
    assert code == 2 and f"{broken}:" in err


def test_checkfailed_is_exit_one_type():
    assert issubclass(CheckFailed, Exception) and Path(hw.__file__).exists()
