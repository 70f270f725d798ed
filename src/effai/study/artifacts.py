"""Every study variant as the file it deploys as, and the winner shipped.

`save(built, ctx, name)` writes `OUT/variants/NAME/`: the variant's file, exported through the
verification gate of `effai.quantize.export_onnx` (a quantize_-d model as the graph it
simulates, with its own scales and codes; a float model as fp32; the fp16 variant as an fp16
graph), or the builder's own file (the `.effdc` of Deep Compression, decoded and checked
against the model it came from). It returns a `Deployed`: the `Artifact` record, the file's own
predictor and what to time, so the runner measures accuracy, per-class harm, robustness and
latency on the file, in its runtime. A variant whose file cannot be written or run is measured
on its torch model, and its record says so (`measured_on="torch"`, with the reason).

`write_manifests(result)` writes `manifest.json` next to every file; `ship(result, reproduce)`
copies the winner's folder to `OUT/best/` with its manifest and the command that rebuilds it.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from effai.fileio import ensure_dir, sha256_file, write_json
from effai.results import Artifact, Manifest, StudyResult, VariantRecord
from effai.results.serial import versioned

VARIANTS_DIR = "variants"
BEST_DIR = "best"
MANIFEST = "manifest.json"
GATE_INPUTS = 128  # test inputs the exported file is checked on against its torch model


@dataclass
class Deployed:
    """A variant's file, ready to be measured: `predict(x) -> logits` runs the file in its
    runtime one input at a time (as deployed); `timed` is what the latency is measured on (the
    ONNX path for `runtime="onnxruntime"`, the decoded or torch model for "torch")."""

    artifact: Artifact
    predict: Callable[[torch.Tensor], torch.Tensor]
    timed: Any
    runtime: str


class OnnxPredictor:
    """Logits of an ONNX file in ONNX Runtime, one input per call (the batch it was exported at)."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        from effai.profile.latency import onnx_runner

        self._run = onnx_runner(path, "onnxruntime", threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from effai.quantize import verify

        return torch.from_numpy(verify.run_file(self._run, verify.rows(x))).float()


def folder(out: str | os.PathLike, name: str) -> Path:
    return Path(out) / VARIANTS_DIR / name


def save(built, ctx, name: str) -> Deployed:
    """Write variant `name`'s file under `ctx.out/variants/name/` and return it ready to measure."""
    d = ensure_dir(folder(ctx.out, name))
    for old in d.iterdir():  # an earlier build's files: only this build's file may be there
        if old.is_file() and (built.file is None or old.resolve() != Path(built.file).resolve()):
            old.unlink()
    try:
        return _own_file(built, ctx) if built.deploy == "file" else _onnx(built, ctx, d)
    except Exception as e:  # noqa: BLE001 - refused or failed export: measured on torch, and said so
        return _torch_model(built, ctx, d, e)


def _relative(path: Path, ctx) -> str:
    return str(Path(path).relative_to(ctx.out))


def _onnx(built, ctx, d: Path) -> Deployed:
    from effai.quantize import export_onnx
    from effai.quantize.simulated import is_quantized

    x = ctx.data.test.tensors[0]
    if built.deploy == "onnx-fp16":
        model, dtype, what = built.structure or built.model, "fp16", "ONNX fp16 (the float model converted; fp32 inputs and outputs)"
    elif is_quantized(built.model):
        model, dtype, what = built.model, None, f"ONNX {built.dtype} (the quantize_ simulation: its own scales and codes)"
    else:
        model, dtype, what = built.model, "fp32", "ONNX fp32"
    path = d / "model.onnx"
    info = export_onnx(model.eval(), path, x[:1], dtype=dtype, verify_inputs=x[:GATE_INPUTS])
    settings = {"export": info["source"], "dtype": info["dtype"], "ort_int8_settings": info["settings"],
                "ops": info["kernels"]["ops"],
                "layers": [f"{la['name']}: {la['weights']} ({la['op']})" for la in info["layers"] or []]}
    art = Artifact(file=_relative(path, ctx), sha256=sha256_file(path), bytes=path.stat().st_size,
                   runtime="onnxruntime", format=what, settings=settings, command=onnx_command(path.name, x.shape[1:], x.dtype),
                   timing=timing(built.dtype, info["kernels"]), verification=_gate_words(info["verification"]))
    return Deployed(art, OnnxPredictor(path), path, "onnxruntime")


def _own_file(built, ctx) -> Deployed:
    """The builder's file (a .effdc), decoded into the variant's architecture and checked
    against the model it was written from, as `export_onnx` checks an ONNX file."""
    from effai.compress import load_compressed
    from effai.quantize import verify

    path = Path(built.file)
    decoded = load_compressed(path, model=copy.deepcopy(built.model)).eval()
    inputs = verify.rows(ctx.data.test.tensors[0][:GATE_INPUTS])
    v = verify.compare(verify.torch_outputs(built.model, inputs), verify.torch_outputs(decoded, inputs),
                       "effai.compress (torch)", verify.MIN_SQNR_DB, verify.MIN_AGREEMENT)
    if not v.passed:
        raise verify.refusal(v, "decoded")
    x = ctx.data.test.tensors[0]
    art = Artifact(file=_relative(path, ctx), sha256=sha256_file(path), bytes=path.stat().st_size,
                   runtime="effai.compress (torch)", format=built.size_format,
                   settings={"decoded_to": "dense fp32 weights", **({"arch": ctx.base_info.arch} if ctx.base_info.arch else {})},
                   command=effdc_command(path.name, x.shape[1:]),
                   timing="timed as fp32, labelled (decoded to dense fp32 weights, torch eager)",
                   verification=_gate_words(v.to_dict()))
    return Deployed(art, decoded, decoded, "torch")


def _torch_model(built, ctx, d: Path, error: Exception) -> Deployed:
    """No deployable file: the torch state dict, measured in torch, labelled as such."""
    from effai.quantize import save as save_state

    path = d / "model.pt"
    save_state(built.model, path)
    why = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:240]}"
    art = Artifact(file=_relative(path, ctx), sha256=sha256_file(path), bytes=path.stat().st_size,
                   runtime="torch", format=f"torch state dict ({built.size_format})", measured_on="torch",
                   command="torch.load('model.pt', weights_only=True) into the variant's model (effai.study.variants)",
                   timing="no kernel: timed as torch eager, labelled (no deployable file)",
                   note=f"no deployable file ({why}): accuracy and latency are the torch model's")
    return Deployed(art, built.model.eval(), built.model.eval(), "torch")


def timing(dtype: str, kernels: dict) -> str:
    """What a latency of a `dtype` variant's file means, from the ops its runtime ran
    (`effai.quantize.kernels.RuntimeKernels.to_dict()`).

    >>> timing("int8", {"runtime": "onnxruntime", "int8_ops": 0, "lowbit_ops": 0, "float_ops": 5})
    'timed as fp32, labelled (0 int8 / 0 low-bit / 5 float ops in onnxruntime)'
    >>> timing("int4", {"runtime": "onnxruntime", "int8_ops": 0, "lowbit_ops": 3, "float_ops": 2})[:18]
    'partly real kernel'
    """
    ops = (f"{kernels['int8_ops']} int8 / {kernels['lowbit_ops']} low-bit / {kernels['float_ops']} float ops "
           f"in {kernels['runtime']}")
    fast = {"int8": kernels["int8_ops"]}.get(dtype, kernels["lowbit_ops"] if dtype in ("int4", "int2", "ternary", "binary")
                                                else None)
    if dtype in ("fp32", "fp16") or (fast and not kernels["float_ops"]):
        kind = "real kernel"
    elif fast:
        kind = "partly real kernel"
    else:  # bf16, fp8, or low-bit codes dequantized to fp32 weights
        kind = "timed as fp32, labelled"
    return f"{kind} ({ops})"


def _gate_words(v: dict) -> str:
    sqnr = "exact" if v["sqnr_db"] is None else f"SQNR {v['sqnr_db']:.1f} dB"
    agree = "" if v["top1_agreement"] is None else f", top-1 agreement {v['top1_agreement']:.1%}"
    return (f"{'passed' if v['passed'] else 'FAILED'}: {sqnr}{agree} against the torch model on {v['samples']} "
            f"test inputs in {v['runtime']} (floor {v['min_sqnr_db']:g} dB, {v['min_agreement']:.0%})")


def _zeros(shape, dtype: torch.dtype) -> str:
    kind = "np.float32" if dtype.is_floating_point else "np.int64"
    return f"np.zeros({(1, *map(int, shape))}, {kind})"


def onnx_command(file: str, shape, dtype: torch.dtype = torch.float32) -> str:
    """A shell command that runs the ONNX file in ONNX Runtime on one input (from its folder).

    >>> print(onnx_command("model.onnx", (1, 8, 8)))
    python -c 'import numpy as np, onnxruntime as ort; s = ort.InferenceSession("model.onnx"); print(s.run(None, {s.get_inputs()[0].name: np.zeros((1, 1, 8, 8), np.float32)})[0].argmax(1))'
    """
    code = (f"import numpy as np, onnxruntime as ort; s = ort.InferenceSession({json.dumps(file)}); "
            f"print(s.run(None, {{s.get_inputs()[0].name: {_zeros(shape, dtype)}}})[0].argmax(1))")
    return f"python -c {shlex.quote(code)}"


def effdc_command(file: str, shape) -> str:
    code = (f"import torch; from effai.compress import load_compressed; m = load_compressed({json.dumps(file)}).eval(); "
            f"print(m(torch.zeros{(1, *map(int, shape))}).argmax(1))")
    return f"python -c {shlex.quote(code)}"


# ------------------------------------------------------------------ manifests and the winner
def manifest(rec: VariantRecord, result: StudyResult, reproduce: str = "") -> Manifest:
    """The manifest of `rec`'s file; its `file` is the name inside the manifest's folder."""
    assert rec.artifact is not None
    art = rec.artifact.replace(file=Path(rec.artifact.file).name)
    return Manifest(rec.name, art, accuracy=rec.accuracy, accuracy_ci=rec.accuracy_ci, dataset=result.dataset.name,
                    n_test=result.dataset.n_test, input_shape=tuple(result.dataset.input_shape), reproduce=reproduce)


def write_manifests(result: StudyResult) -> None:
    for rec in result.variants:
        if rec.ok and rec.artifact is not None:
            write_json(folder(result.out_dir, rec.name) / MANIFEST, versioned(manifest(rec, result).to_dict()))


def intact(rec: VariantRecord, out: str | os.PathLike) -> bool:
    """True when `rec`'s file is on disk with the bytes it was measured on (sha256)."""
    if rec.artifact is None:
        return False
    path = Path(out) / rec.artifact.file
    return path.is_file() and sha256_file(path) == rec.artifact.sha256


def ship(result: StudyResult, reproduce: str) -> StudyResult:
    """Copy the winner's folder to `OUT/best/` (replacing an older one; removed when nothing
    was chosen) with its manifest and `reproduce`, and return `result` pointing at it."""
    out = Path(result.out_dir)
    best = out / BEST_DIR
    shutil.rmtree(best, ignore_errors=True)
    rec = result.best
    if rec is None or rec.artifact is None:
        return result.replace(best_dir="", reproduce="")
    tmp = out / f".{BEST_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(out / rec.artifact.file, tmp / Path(rec.artifact.file).name)
    write_json(tmp / MANIFEST, versioned(manifest(rec, result, reproduce).to_dict()))
    os.replace(tmp, best)  # the folder appears whole
    return result.replace(best_dir=str(best), reproduce=reproduce)


def read_manifest(path: str | os.PathLike) -> Manifest:
    """The manifest of a variant folder (or of its manifest.json); InputError if it is not one."""
    from effai.errors import InputError
    from effai.results.serial import unversioned

    p = Path(path)
    p = p / MANIFEST if p.is_dir() else p
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: cannot read a variant manifest ({type(e).__name__})") from None
    return Manifest.from_dict(unversioned(d, str(p)), str(p))


def is_variant_folder(path: str | os.PathLike) -> bool:
    """True for a folder the study wrote a variant into (`OUT/variants/NAME/`, `OUT/best/`)."""
    return (Path(path) / MANIFEST).is_file()


def checked_file(path: str | os.PathLike) -> tuple[Manifest, Path]:
    """A variant folder's manifest and file, the file's sha256 checked against the manifest's."""
    from effai.errors import InputError

    m = read_manifest(path)
    file = Path(path) / m.artifact.file
    if not file.is_file():
        raise InputError(f"{path}: the manifest names {m.artifact.file}, which is not there")
    if sha256_file(file) != m.artifact.sha256:
        raise InputError(f"{file}: its sha256 differs from the manifest's: the file changed since the study wrote it")
    return m, file


def export_variant(path: str | os.PathLike, out: str | os.PathLike, dtype: str | None = None) -> dict:
    """`effai export` of a study variant folder: its ONNX file as it was measured (sha256 checked,
    loaded in ONNX Runtime), or its .effdc decoded and exported to fp32 ONNX through the
    verification gate on the test split of its data set. `dtype`, if given, must be the file's."""
    from effai.errors import InputError
    from effai.fileio import write_atomic

    m, file = checked_file(path)
    art = m.artifact
    have = art.settings.get("dtype") or ("fp32" if file.suffix == ".effdc" else None)
    if dtype is not None and dtype != have:
        raise InputError(f"--dtype {dtype}: variant {m.variant} deploys as {have or art.format}; leave --dtype out "
                         "to export it as the study measured it")
    info = {"path": str(out), "dtype": have, "runtime": "onnxruntime", "settings": None, "candidates": None,
            "float_latency_ms": None, "layers": None, "float_bytes": None, "variant": m.variant,
            "accuracy": m.accuracy, "sha256": art.sha256}
    if file.suffix == ".onnx":
        from effai.quantize import verify

        verify.load(file, "onnxruntime")  # still loads in this ONNX Runtime
        write_atomic(out, file.read_bytes())
        return {**info, "source": f"study variant {m.variant} (file as measured, sha256 checked)",
                "bytes": Path(out).stat().st_size, "verification": {"summary": art.verification, "sqnr_db": None}}
    if file.suffix == ".effdc":
        from effai import data as data_mod
        from effai.compress import load_compressed
        from effai.quantize import export_onnx

        model = load_compressed(file).eval()
        x = data_mod.load(m.dataset).test.tensors[0]
        got = export_onnx(model, out, x[:1], dtype="fp32", verify_inputs=x[:500])
        return {**got, "source": f"study variant {m.variant}: its .effdc decoded to dense fp32", "variant": m.variant,
                "accuracy": m.accuracy}
    raise InputError(f"{path}: variant {m.variant} has no deployable file ({art.note or art.format})")
