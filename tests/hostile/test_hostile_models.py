"""Hostile model files against every command that reads a model, and the Python API."""

from __future__ import annotations

import pytest
import torch
from hostile_corpus import (
    empty_pt,
    nonfinite_state,
    onnx_external_escape,
    onnx_unsupported_op,
    payload_checkpoint,
    payload_resume,
    payload_state_dict,
    torchscript_file,
    truncated_pt,
    wrong_arch_state,
    wrong_shape_state,
)
from hostile_util import assert_rejected, cli, cmd_text, first_line, record, run_and_record

from effai.errors import InputError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    t = tmp_path_factory.mktemp("models")
    mk = t / "PAYLOAD_RAN"
    files = {
        "pickle payload in a state dict": payload_state_dict(t, mk),
        "pickle payload in a checkpoint folder": payload_checkpoint(t, mk),
        "pickle payload in a training resume file (last.pt)": payload_resume(t, mk),
        "zero-byte .pt": empty_pt(t),
        "truncated .pt": truncated_pt(t),
        "state dict of another architecture": wrong_arch_state(t),
        "state dict with a wrong shape": wrong_shape_state(t),
        "NaN weight": nonfinite_state(t, float("nan")),
        "Inf weight": nonfinite_state(t, float("inf")),
        "TorchScript file": torchscript_file(t),
        "ONNX with an unsupported op": onnx_unsupported_op(t),
        "ONNX external data ../../etc/passwd": onnx_external_escape(t),
    }
    recipe = t / "recipe.yaml"
    recipe.write_text("dataset: digits\nprune_epochs: 1\nfinetune_epochs: 0\n")
    return t, mk, files, recipe


# What each file must be refused with (exit 2), by the words the one stderr line must hold.
EXPECT = {
    "pickle payload in a state dict": ("refused to unpickle", "--trust-pickle"),
    "pickle payload in a checkpoint folder": ("model.pt", "refused to unpickle"),
    "zero-byte .pt": ("empty",),
    "truncated .pt": ("truncated",),
    "state dict of another architecture": ("missing key 'features.0.weight'", "(6, 1, 5, 5)"),
    "state dict with a wrong shape": ("'classifier.4.weight'", "(7, 84)", "(10, 84)"),
    "NaN weight": ("'features.0.weight'", "1 NaN"),
    "Inf weight": ("'features.0.weight'", "1 Inf"),
    "ONNX with an unsupported op": ("'evil_node'", "com.evil:FrobnicateTensor"),
    "ONNX external data ../../etc/passwd": ("'w'", "../../etc/passwd", "outside its folder"),
}
STATE_DICTS = ("pickle payload in a state dict", "zero-byte .pt", "truncated .pt", "state dict of another architecture",
               "state dict with a wrong shape", "NaN weight", "Inf weight")


def test_model_files_via_cli(corpus):
    t, mk, files, recipe = corpus
    cases, expect, markers = {}, {}, {}
    for what, path in files.items():
        fname = path.name
        arch = ["--arch", "lenet5"] if what in STATE_DICTS else []
        if what in EXPECT:
            for cmd, extra in (("profile", ["--no-latency"]), ("fit", ["--target", "nano33ble"])):
                name = f"{what} → {cmd}"
                cases[name] = [cmd, path, *arch, *extra]
                expect[name] = (2, fname, *EXPECT[what])
                markers[name] = mk
    for what in ("pickle payload in a state dict", "pickle payload in a checkpoint folder", "zero-byte .pt",
                 "NaN weight"):
        name = f"{what} → compress"
        arch = ["--arch", "lenet5"] if what in STATE_DICTS else []
        cases[name] = ["compress", files[what], *arch, "--recipe", recipe, "--out", t / f"c{len(cases)}"]
        expect[name], markers[name] = (2, files[what].name, *EXPECT[what]), mk
    for what in ("pickle payload in a state dict", "zero-byte .pt", "NaN weight"):
        name = f"{what} → export"
        cases[name] = ["export", files[what], "--arch", "lenet5", "--out", t / f"e{len(cases)}.onnx"]
        expect[name], markers[name] = (2, files[what].name, *EXPECT[what]), mk
    name = "pickle payload in a training resume file (last.pt) → train"
    cases[name] = ["train", "lenet5", "--dataset", "synthetic", "--epochs", "1",
                   "--out", files["pickle payload in a training resume file (last.pt)"]]
    expect[name], markers[name] = (2, "last.pt", "refused to unpickle"), mk
    name = "pickle payload in a checkpoint folder → study --model"
    cases[name] = ["study", "--model", files["pickle payload in a checkpoint folder"], "--dataset", "digits",
                   "--quick", "--out", t / "study"]
    expect[name], markers[name] = (2, "model.pt", "refused to unpickle"), mk
    # TorchScript is a program: refused without --trust-code; with it, it works where its input
    # fits, and where it does not, one line names the mismatch.
    ts = files["TorchScript file"]
    for cmd, extra in (("profile", ["--no-latency"]), ("fit", ["--target", "nano33ble"]),
                       ("compress", ["--recipe", recipe, "--out", t / "cts0"])):
        cases[f"TorchScript file without --trust-code → {cmd}"] = [cmd, ts, *extra]
        expect[f"TorchScript file without --trust-code → {cmd}"] = (2, "scripted.pt", "TorchScript", "--trust-code")
    cases["TorchScript file → profile"] = ["profile", ts, "--trust-code", "--input", "1x1x28x28", "--no-latency",
                                           "--json"]
    expect["TorchScript file → profile"] = (0,)
    cases["TorchScript file → fit"] = ["fit", ts, "--trust-code", "--input", "1x1x28x28", "--target", "nano33ble"]
    expect["TorchScript file → fit"] = (0,)
    cases["TorchScript file on 8x8 digits → compress"] = ["compress", ts, "--trust-code", "--recipe", recipe,
                                                           "--out", t / "cts"]
    expect["TorchScript file on 8x8 digits → compress"] = (2, "scripted.pt", "cannot run on one sample", "1x1x8x8")
    cases["latency runtime that effai does not have → profile"] = ["profile", "lenet5", "--runtime", "tensorrt"]
    expect["latency runtime that effai does not have → profile"] = (2, "--runtime", "'tensorrt'", "openvino")
    results = run_and_record(cases, t, expect, markers)
    assert '"params"' in results["TorchScript file → profile"]["stdout"]
    assert not mk.exists()


def test_payload_and_oom_via_python_m_effai(corpus):
    """The two cases that matter most, each in its own `python -m effai.cli` process."""
    t, mk, files, _ = corpus
    argv = ["profile", files["pickle payload in a state dict"], "--arch", "lenet5", "--no-latency"]
    r = cli(argv, text=True)
    rec = record("pickle payload in a state dict → profile (own process)", cmd_text(argv), r.returncode, r.stderr,
                 payload_executed=mk.exists())
    assert_rejected(rec["case"], {"exit_code": r.returncode, "stderr": r.stderr}, "evil_state.pt", "refused")
    assert not mk.exists()

    argv = ["profile", "resnet50", "--input", "100000x3x224x224", "--no-latency"]
    r = cli(argv, text=True, timeout=120)
    rec = record("input shape needing more memory than the machine has", cmd_text(argv), r.returncode, r.stderr)
    assert_rejected(rec["case"], {"exit_code": r.returncode, "stderr": r.stderr}, "100000x3x224x224", "memory",
                    "available")


def test_trust_pickle_is_the_only_way_in(corpus, tmp_path):
    """--trust-pickle runs the payload: proof that the marker works and that refusal is what kept it out."""
    from effai.fileio import load_torch_file

    marker = tmp_path / "RAN"
    p = payload_state_dict(tmp_path, marker)
    with pytest.raises(InputError):
        load_torch_file(p)
    assert not marker.exists()
    load_torch_file(p, trust_pickle=True)
    assert marker.exists()


def test_python_api(corpus):
    from effai import profile
    from effai.zoo.loading import load_model

    t, mk, files, _ = corpus
    for what, words in EXPECT.items():
        arch = "lenet5" if what in STATE_DICTS else None
        with pytest.raises(InputError) as e:
            load_model(str(files[what]), arch=arch)
        record(f"{what} → effai.zoo.loading.load_model", f"load_model({files[what].name!r}, arch={arch!r})",
               "InputError", outcome=str(e.value), payload_executed=mk.exists())
        msg = str(e.value)
        assert "\n" not in msg and files[what].name in msg
        for w in words:
            assert w.lower() in msg.lower(), (what, msg)
    with pytest.raises(InputError, match="--trust-code"):
        load_model(str(files["TorchScript file"]))
    lm = load_model(str(files["TorchScript file"]), trust_pickle=True)
    out = lm.model(torch.zeros(1, 1, 28, 28))
    assert out.shape == (1, 10)
    record("TorchScript file → load_model", "load_model('scripted.pt', trust_pickle=True)", "ok", outcome=f"loaded, output {tuple(out.shape)}")

    from effai import zoo

    m = zoo.create("resnet50")
    for shape in ((100_000, 3, 224, 224), (20_000, 3, 224, 224)):
        with pytest.raises(InputError) as e:
            profile(m, input_shape=shape, latency=False)
        record("input shape needing more memory than the machine has → effai.profile",
               f"effai.profile(resnet50, input_shape={shape})", "InputError", outcome=str(e.value))
        assert "memory" in str(e.value) and "x".join(map(str, shape)) in str(e.value)
    assert first_line(str(e.value))
    assert not mk.exists()
