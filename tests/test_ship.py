"""The study ships files: every variant is saved as the file it deploys as (OUT/variants/NAME/ with
manifest.json) and measured as that file in its runtime; the winner is copied to OUT/best/, whose
file, loaded in its runtime with nothing of effai, reproduces the reported accuracy exactly;
`effai export` takes a variant folder."""

import hashlib
import json
import subprocess
import sys

import onnxruntime as ort
import pytest

from effai import data, study
from effai.quantize import FP8Config, quantize_
from effai.results import Manifest
from effai.results.serial import unversioned
from effai.study.variants import VARIANTS, Built, variant

pytestmark = pytest.mark.slow  # one quick study (about 25 s on 2 cores) shared by the module

VARIANT_NAMES = ("fp16", "int8_ptq", "int8_qat", "int4", "ternary", "magnitude_75", "deep_compression", "no_kernel_fp8")


@pytest.fixture(scope="module")
def no_kernel_variant():
    """A variant whose file cannot be written: fp8 activations have no ONNX op on a CPU."""

    @variant("no_kernel_fp8", family="test")
    def no_kernel_fp8(ctx):
        """fp8 weights and activations."""
        m = quantize_(ctx.base_copy(), FP8Config(activations=True))
        return Built(m, 60_000, "fp8 weights", dtype="fp8_e4m3", bits=8)

    yield "no_kernel_fp8"
    del VARIANTS["no_kernel_fp8"]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, no_kernel_variant):
    out = tmp_path_factory.mktemp("ship") / "run"
    cfg = study.StudyConfig(dataset="digits", model="lenet300_100", quick=True, out=str(out), variants=VARIANT_NAMES,
                            max_size="150KB")
    return study.run(cfg), out


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_variant_is_a_file_with_a_manifest_whose_sha256_matches(shipped):
    result, out = shipped
    assert [v.name for v in result.variants] == ["fp32", *VARIANT_NAMES]
    assert all(v.ok for v in result.variants), [(v.name, v.error) for v in result.variants]
    for r in result.variants:
        folder = out / "variants" / r.name
        m = Manifest.from_dict(unversioned(json.loads((folder / "manifest.json").read_text()), r.name))
        f = folder / m.artifact.file
        assert f.is_file() and _sha256(f) == m.artifact.sha256 == r.artifact.sha256, r.name
        assert f.stat().st_size == m.artifact.bytes == r.size_bytes, r.name  # size is the file's
        assert m.accuracy == r.accuracy and m.artifact.command and m.artifact.runtime, r.name
        # latency comes from the variant's own file (not the base model's)
        assert str(r.artifact.file) in r.cost.latency.how, r.name
    by = {r.name: r for r in result.variants}
    for name in VARIANT_NAMES[:-1]:
        assert by[name].artifact.measured_on == "file", name
    assert by["deep_compression"].artifact.file.endswith("model.effdc")
    # no runtime kernel: measured on the torch model, and the record says so
    nk = by["no_kernel_fp8"].artifact
    assert nk.measured_on == "torch" and "no deployable file" in nk.note and nk.file.endswith("model.pt")


def test_int8_variants_are_exported_from_the_simulation_and_run_int8_kernels(shipped):
    result, _ = shipped
    for name in ("int8_ptq", "int8_qat"):
        art = result.variant(name).artifact
        assert art.settings["export"] == "quantize_ simulation" and art.settings["dtype"] == "int8", name
        assert art.verification.startswith("passed"), name
    ptq = result.variant("int8_ptq").artifact
    assert ptq.timing.startswith("real kernel") and (ptq.settings["ops"].get("QGemm", 0) > 0)
    qat = result.variant("int8_qat").artifact  # dynamic activations: ONNX Runtime runs its float kernels
    assert qat.timing.startswith(("timed as fp32, labelled", "partly real kernel", "real kernel"))


def test_torch_and_file_accuracy_agree_within_the_interval(shipped):
    result, _ = shipped
    for r in result.variants:
        if r.artifact.measured_on == "file":
            ci = r.accuracy_ci
            assert ci.low <= r.artifact.torch_accuracy <= ci.high, r.name


def test_best_file_in_its_runtime_reproduces_the_reported_accuracy_exactly(shipped):
    result, out = shipped
    best = result.best
    assert best is not None and result.best_dir == str(out / "best")
    m = Manifest.from_dict(unversioned(json.loads((out / "best" / "manifest.json").read_text()), "best"))
    f = out / "best" / m.artifact.file
    assert m.variant == best.name and _sha256(f) == best.artifact.sha256
    assert f"--variants {best.name}" in m.reproduce == result.reproduce
    ds = data.load("digits", seed=0)
    x, y = ds.test.tensors
    assert f.suffix == ".onnx", "the quick digits study ships an ONNX file"
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    preds = [int(sess.run(None, {name: x[i:i + 1].numpy()})[0].argmax(1)[0]) for i in range(len(x))]
    assert preds == best.evaluation.predictions
    correct = sum(int(p == t) for p, t in zip(preds, y.tolist(), strict=True))
    assert correct == round(best.accuracy * len(y)) and m.accuracy == best.accuracy
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "best/manifest.json" in md and result.reproduce in md
    assert 'href="best/model.onnx"' in html and "reproduce-best" in html


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "effai.cli", *args], capture_output=True, text=True, timeout=300)


def test_export_takes_a_variant_folder_and_refuses_a_changed_file(shipped, tmp_path):
    result, out = shipped
    r = _cli("export", str(out / "best"), "--out", str(tmp_path / "best.onnx"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "best.onnx").read_bytes() == (out / "best" / "model.onnx").read_bytes()
    r = _cli("export", str(out / "variants" / "deep_compression"), "--out", str(tmp_path / "dc.onnx"), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["verification"]["passed"] and info["dtype"] == "fp32"
    sess = ort.InferenceSession(str(tmp_path / "dc.onnx"), providers=["CPUExecutionProvider"])
    x = data.load("digits", seed=0).test.tensors[0][:20].numpy()
    preds = [int(sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0].argmax(1)[0]) for i in range(len(x))]
    assert preds == result.variant("deep_compression").evaluation.predictions[:20]
    r = _cli("export", str(out / "variants" / "int4"), "--dtype", "int8", "--out", str(tmp_path / "x.onnx"))
    assert r.returncode == 2 and "deploys as int4" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    copy = tmp_path / "tampered"
    copy.mkdir()
    (copy / "manifest.json").write_text((out / "variants" / "fp16" / "manifest.json").read_text())
    (copy / "model.onnx").write_bytes((out / "variants" / "fp16" / "model.onnx").read_bytes() + b"\0")
    r = _cli("export", str(copy), "--out", str(tmp_path / "t.onnx"))
    assert r.returncode == 2 and "sha256 differs" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_missing_file_is_rebuilt_on_resume(shipped):
    result, out = shipped
    (out / "variants" / "int4" / "model.onnx").unlink()
    cfg = study.StudyConfig(dataset="digits", model="lenet300_100", quick=True, out=str(out), variants=("int4",),
                            max_size="150KB")
    again = study.run(cfg)
    f = out / "variants" / "int4" / "model.onnx"
    assert f.is_file() and _sha256(f) == again.variant("int4").artifact.sha256
    old, new = result.variant("fp32"), again.variant("fp32")  # intact: reused, not rebuilt
    assert (new.finished_at, new.artifact) == (old.finished_at, old.artifact)
