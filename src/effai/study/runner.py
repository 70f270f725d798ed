"""`run(StudyConfig)`: the whole study, start to finish.

    load data -> load or train the base model -> for each variant: build (registry)
    -> measure (profile, latency, targets)
    -> evaluate (accuracy, per class, robustness) -> compare with the base (harm)
    -> append its record to results.jsonl
    then Pareto fronts, constraint selection, result.json and the reports.

Finished variants are read back from results.jsonl instead of being rebuilt.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from effai.errors import InputError
from effai.quantize.core import NothingToQuantize
from effai.results import (
    AXES,
    BaseModelInfo,
    Constraints,
    Cost,
    DatasetInfo,
    Energy,
    Environment,
    StudyResult,
    VariantRecord,
    fmt_bytes,
    fmt_fraction,
    fmt_ms,
    leader,
    pareto_front,
    select,
)
from effai.study import artifacts, measure, variants
from effai.study import progress as study_progress
from effai.study.config import StudyConfig
from effai.study.context import Context, load_base
from effai.study.store import RunDir

# Targets in the fit matrix: a spread from microcontrollers to a data-centre GPU.
FIT_TARGETS = ["nano33ble", "stm32f746", "esp32s3", "rpi4", "jetson_orin_nano", "coral_edgetpu", "t4"]


def run(cfg: StudyConfig, progress: bool = False, command: str | None = None) -> StudyResult:
    """Run (or resume) the study `cfg` and write results.jsonl, result.json and the reports.

    >>> import tempfile
    >>> cfg = StudyConfig(dataset="digits", model="lenet300_100", quick=True, variants=("fp16",),
    ...                   out=tempfile.mkdtemp())
    >>> r = run(cfg)  # doctest: +SKIP
    """
    start = time.perf_counter()
    variants.resolve(cfg.variants, cfg.quick)  # unknown names fail before the data is loaded
    out = Path(cfg.out or Path("runs") / (cfg.name or f"{cfg.model}-{cfg.dataset}".replace("/", "_")))
    name = cfg.name or out.name
    extra_targets = [cfg.target] if cfg.target else []
    fit_targets = list(dict.fromkeys(FIT_TARGETS + extra_targets))
    if cfg.target:
        from effai import hardware

        if cfg.target not in hardware.load_catalogue().names():
            from effai.errors import suggest

            raise suggest(cfg.target, hardware.load_catalogue().names(), "target")
    data = _load_data(cfg)
    names = variants.resolve(cfg.variants, cfg.quick, variants.input_kind(data))
    _check_model_fits(cfg, data)  # before the folder is claimed: a misfit leaves nothing behind
    with RunDir(out, cfg.identity(), cfg.key(), cfg.force) as rd:
        slices = _slices(cfg, data)
        base, base_info = load_base(cfg, data, rd.base_dir)
        ctx = Context(cfg, data, out, base, base_info)
        done = rd.finished()
        records: dict[str, VariantRecord] = {}
        todo = [n for n in names if n not in done or _targets_missing(done[n], fit_targets)
                or not artifacts.intact(done[n], out)]
        with study_progress.reporter(names, progress) as shown:
            for n in names:
                rec = done.get(n)
                if n not in todo and rec is not None:
                    records[n] = rec
                    shown.reused(n)
                    continue
                rec = _run_variant(n, ctx, records.get("fp32"), slices, fit_targets,
                                   lambda what, n=n: shown.step(n, what))
                rd.append(rec)
                records[n] = rec
                shown.finished(n, _summary(rec))
                if n == todo[0] and len(todo) > 1:
                    shown.note(study_progress.estimate(n, rec.seconds or 0.0, len(todo) - 1))
        recs = [records[n] for n in names]
        result = _result(cfg, name, out, recs, data, base_info, command, start)
        artifacts.write_manifests(result)
        result = artifacts.ship(result, reproduce=_reproduce(cfg, result))
        _write(result, out)
        return result


def _run_variant(n: str, ctx: Context, base_rec: VariantRecord | None, slices, fit_targets: list[str],
                 step) -> VariantRecord:
    spec = variants.VARIANTS[n]
    about = {"family": spec.family, "description": spec.description}
    t0 = time.perf_counter()
    try:
        rec = _measure_variant(n, spec, ctx, base_rec, slices, fit_targets, step or (lambda what: None))
    except NothingToQuantize as e:  # e.g. a TorchScript model: this variant fails, saying why
        rec = VariantRecord.failed(n, e)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - one broken variant must not sink the study; it is reported
        if n == "fp32":
            raise
        rec = VariantRecord.failed(n, e)
    return rec.replace(**about, seconds=time.perf_counter() - t0, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))


def _measure_variant(n: str, spec, ctx: Context, base_rec: VariantRecord | None, slices, fit_targets: list[str],
                     step) -> VariantRecord:
    """Build variant `n`, time it, count it, evaluate it, compare it with the base, fit it on the targets."""
    from effai import evaluate as ev

    torch.manual_seed(ctx.cfg.seed)
    step("building")
    built = spec.build(ctx)
    step("writing its file")
    deployed = artifacts.save(built, ctx, n)
    art = deployed.artifact
    step("measuring")
    latency, energy = measure.latency(deployed, ctx.data.test.tensors[0][:1], ctx.cfg.threads, ctx.cfg.quick)
    prof = measure.counts(built, ctx.input_shape)
    energy = energy or Energy(prof.energy.joules, "estimated", prof.energy.detail)
    step("evaluating")
    sev = (1, 5) if ctx.cfg.quick else (1, 3, 5)
    # on the file, in its runtime; the torch model's clean accuracy is kept beside it
    evaluation = ev.evaluate(deployed.predict, ctx.data, slices=slices, severities=sev, seed=ctx.cfg.seed)
    art = art.replace(torch_accuracy=ev.evaluate(built.model, ctx.data, corruptions=()).accuracy)
    harm = None
    if base_rec is not None and base_rec.ok and base_rec.evaluation is not None:
        harm = ev.compare(base_rec.evaluation, evaluation, slices=slices)
    step("fit on targets")
    cost = Cost(size_bytes=art.bytes, size_format=art.format, params=prof.total.params,
                macs=prof.total.macs, peak_activation_bytes=prof.total.peak_activation_bytes, latency=latency,
                energy=energy)
    notes = list(built.notes) + ([art.note] if art.note else [])
    if built.size_bytes < art.bytes * 0.9:  # the builder's packed format is not what ships
        notes.append(f"{built.size_format} would take {fmt_bytes(built.size_bytes)}; the file it deploys as "
                     f"takes {fmt_bytes(art.bytes)}")
    return VariantRecord(n, accuracy=evaluation.accuracy, dtype=built.dtype, bits=built.bits, cost=cost,
                         evaluation=evaluation, harm=harm, targets=measure.targets(prof, built.dtype, fit_targets, built, ctx, n),
                         notes=tuple(notes), details={**built.extra, "storage_bytes": int(built.size_bytes),
                                                      "storage_format": built.size_format}, artifact=art)


def _targets_missing(rec: VariantRecord, fit_targets: list[str]) -> bool:
    return any(t not in rec.targets for t in fit_targets)


def _summary(rec: VariantRecord) -> str:
    if not rec.ok:
        return f"FAILED ({(rec.error or '')[:60]})"
    return f"{fmt_fraction(rec.accuracy)}, {fmt_bytes(rec.size_bytes)}, {fmt_ms(rec.latency_ms)}"


def _check_model_fits(cfg: StudyConfig, data) -> None:
    """A zoo model that cannot take the data set's inputs is refused up front, naming those that can;
    any other model (the user's class, a checkpoint, a state dict) is loaded and run on one sample."""
    from effai import zoo
    from effai.zoo.registry import _resolve  # create's own option checks, without building the model

    if cfg.model not in zoo.names():
        from effai.zoo.loading import load_for_data

        load_for_data(cfg.model, data, arch=cfg.arch, trust_pickle=cfg.trust_code, model_args=cfg.model_args,
                      onnx_refusal="cannot be compressed by the study")
        return
    shape = tuple(data.input_shape)

    def fits(name: str) -> bool:
        if (zoo.info(name).input_dtype == "int64") != data.is_tokens:  # token models take token data only
            return False
        opts = zoo.options_for(name, data)
        try:
            _resolve(name, opts["num_classes"], opts["in_channels"], None, opts.get("resolution"))
        except InputError:
            return False
        return True

    if not fits(cfg.model):
        fitting = [n for n in zoo.names() if fits(n)]
        raise InputError(f"--model {cfg.model} does not take {cfg.dataset}'s inputs {shape}; models that do: "
                         f"{', '.join(fitting) or 'none in the zoo'} (e.g. --model {fitting[0] if fitting else '...'})")


def _load_data(cfg: StudyConfig):
    from effai import data

    ds = data.load(cfg.dataset, seed=cfg.seed)
    if cfg.quick:  # a small training subset: the quick study checks the pipeline, not the accuracy
        from torch.utils.data import TensorDataset

        x, y = ds.train.tensors
        ds.train = TensorDataset(x[:2000], y[:2000])
    return ds


def _slices(cfg: StudyConfig, ds) -> list[str]:
    """Subgroup labels for the test set: the user's file, else the data set's own (e.g. the SNR of
    a kws clip), else terciles of a property of the input that per-class accuracy does not show:
    ink density (how much of the image is stroke) or sequence length (`_terciles`)."""
    n = len(ds.test)
    if cfg.slices:
        path = Path(cfg.slices)
        if not path.is_file():
            raise InputError(f"--slices {path}: no such file")
        labels = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if len(labels) != n:
            raise InputError(f"--slices {path}: {len(labels)} labels for {n} test examples; give one per line")
        return labels
    if ds.meta.get("slices"):
        return list(ds.meta["slices"])
    return _terciles(ds)[1]


def _terciles(ds) -> tuple[str, list[str]]:
    """(what, one label per test example): terciles of the sequence length (real tokens: the
    mask, else the non-zero ids) for token data, of the ink density for images."""
    x = ds.test.tensors[0]
    if ds.is_tokens:
        mask = ds.masks["test"] if ds.masks else (x != 0)
        value, what = mask.sum(1).float(), "sequence-length terciles"
        words = ("short sequences", "medium sequences", "long sequences")
    else:
        value, what = x.flatten(1).mean(1), "ink-density terciles"
        words = ("thin strokes", "medium strokes", "bold strokes")
    lo, hi = torch.quantile(value, torch.tensor([1 / 3, 2 / 3])).tolist()
    return what, [words[0] if v < lo else (words[2] if v > hi else words[1]) for v in value.tolist()]


def _result(cfg: StudyConfig, name: str, out: Path, recs: list[VariantRecord], data, base: BaseModelInfo,
            command: str | None, start: float) -> StudyResult:
    c = cfg.constraints()
    recs = with_statistics(mark_slower_than_fp32(recs), c)
    notes = []
    contended = [r.name for r in recs if r.ok and r.cost.latency is not None and r.cost.latency.contended]
    if contended:
        notes.append(f"CONTENDED: {len(contended)} of {len(recs)} latencies were measured while the machine was "
                     f"busy ({', '.join(contended)}); their wall times include waiting for a core")
    failed = [r.name for r in recs if not r.ok]
    if failed:
        notes.append(f"failed variants (reported, not selected): {', '.join(failed)}")
    notes.append(base.describe())
    if cfg.quick:
        notes.append("quick mode: small training subset, 1-epoch fine-tunes, 10 timed runs, severities 1 and 5")
    return StudyResult(
        name=name, base=base, reference="fp32",
        dataset=DatasetInfo(data.name, tuple(data.class_names), len(data.test), tuple(data.input_shape),
                            "user file" if cfg.slices else data.meta.get("slices_name") or _terciles(data)[0]),
        variants=tuple(recs), pareto={axis: tuple(r.name for r in pareto_front(recs, [axis])) for axis in AXES},
        constraints=c, selection=select(recs, c), config=cfg.to_dict(),
        command=command or _command(cfg),
        environment=_environment(),
        out_dir=str(out), notes=tuple(notes),
        latency_note=(f"each variant's own file in its runtime (ONNX Runtime; the .effdc decoded in torch), one "
                      f"input, {cfg.threads} thread(s); formats without a CPU kernel are timed as fp32 and "
                      "labelled (see each cell's tooltip)"),
        energy_note="measured (RAPL) where the machine exposes counters, else estimated with the Horowitz 45 nm model",
        fit_note="effai.hardware.fit (RAM and flash with runtime overheads) and roofline estimates; "
                 "sub-8-bit variants run on int8 kernels where a target lacks int4. Hover a cell for details.",
        seconds=time.perf_counter() - start,
    )


def mark_slower_than_fp32(recs: list[VariantRecord], base: str = "fp32") -> list[VariantRecord]:
    """Mark each latency measured on the base's runtime that is slower than the base's beyond both
    spreads (IQR): such a variant is never recommended for latency (`select` reads the mark)."""
    ref = next((r for r in recs if r.name == base and r.ok and r.cost.latency is not None), None)
    if ref is None or ref.cost.latency is None:
        return recs
    b = ref.cost.latency
    out = []
    for r in recs:
        lat = r.cost.latency
        if (r is not ref and r.ok and lat is not None and lat.method == "measured" and lat.runtime == b.runtime
                and lat.p50_ms - b.p50_ms > max(lat.iqr_ms or 0.0, b.iqr_ms or 0.0)):
            why = f"slower than fp32 on {lat.runtime} ({fmt_ms(lat.p50_ms)} vs {fmt_ms(b.p50_ms)})"
            r = r.replace(cost=r.cost.replace(latency=lat.replace(slower_than_fp32=True, how=f"{lat.how}; {why}")))
        out.append(r)
    return out


def with_statistics(recs: list[VariantRecord], c: Constraints, base: str = "fp32") -> list[VariantRecord]:
    """Each evaluated record with its accuracy interval and its paired tests against the base and
    against the leader (the most accurate feasible variant), on the same test examples; `select`
    reads `vs_leader` to call ties."""
    from effai import evaluate as ev

    ref = next((r for r in recs if r.name == base and r.ok and r.evaluation is not None), None)
    lead = leader(recs, c)
    lead_ev = lead.evaluation if lead is not None else None
    out = []
    for r in recs:
        if r.ok and r.evaluation is not None:
            r = r.replace(
                accuracy_ci=ev.interval(r.evaluation),
                vs_base=None if ref is None or r.name == ref.name else ev.paired(r.evaluation, ref.evaluation, ref.name),
                vs_leader=None if lead is None or lead_ev is None or r.name == lead.name else
                ev.paired(r.evaluation, lead_ev, lead.name))
        out.append(r)
    return out


def _environment() -> Environment:
    """Where the numbers were taken: the CPU model, its cores and the runtimes' versions."""
    from importlib.metadata import PackageNotFoundError, version

    from effai.hardware.host import cpu_model

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return ""

    return Environment(python=sys.version.split()[0], torch=torch.__version__, platform=platform.platform(),
                       processor=platform.processor() or platform.machine(), torch_threads=torch.get_num_threads(),
                       cpu_model=cpu_model(), onnxruntime=installed("onnxruntime"), openvino=installed("openvino"),
                       cores=os.cpu_count())


def _command(cfg: StudyConfig) -> str:
    """The CLI command that reruns `cfg` (a study started from Python): a model registered in
    Python is named by its file (`file.py:builder` with --trust-code), which a fresh process can load."""
    from effai.zoo import usercode

    model, arch, trust = cfg.model, cfg.arch, cfg.trust_code
    model, arch = _cli_name(model) or model, _cli_name(arch)
    trust = trust or usercode.is_code_spec(model) or usercode.is_code_spec(arch)
    parts = ["effai", "study", "--dataset", cfg.dataset, "--model", model]
    if cfg.quick:
        parts.append("--quick")
    if trust:
        parts.append("--trust-code")
    for flag, v in (("--arch", arch), ("--model-args", json.dumps(cfg.model_args) if cfg.model_args else None),
                    ("--max-size", cfg.max_size), ("--max-latency", cfg.max_latency),
                    ("--min-accuracy", cfg.min_accuracy), ("--target", cfg.target), ("--out", cfg.out),
                    ("--slices", cfg.slices), ("--epochs", cfg.epochs),
                    ("--threads", cfg.threads if cfg.threads != 1 else None)):
        if v is not None:
            parts += [flag, str(v)]
    if cfg.variants:
        parts += ["--variants", ",".join(cfg.variants)]
    if cfg.seed:
        parts += ["--seed", str(cfg.seed)]
    return shlex.join(parts)


def _cli_name(name: str | None) -> str | None:
    """A zoo name registered outside effai becomes `/abs/file.py:builder` (the CLI process does
    not run the user's registration); every other name is kept."""
    from effai import zoo
    from effai.zoo import usercode
    from effai.zoo.registry import _BUILDERS

    if name is None or name not in zoo.names():
        return name
    return usercode.source_spec(_BUILDERS[name]) or name


def _reproduce(cfg: StudyConfig, result: StudyResult) -> str:
    """The one command that builds the winner again: this study with only that variant (and
    fp32, its reference), into a folder of its own."""
    best = result.selection.best
    if best is None:
        return ""
    return _command(replace(cfg, variants=(best,), out=f"{result.out_dir.rstrip('/')}-{best}"))


def _write(result: StudyResult, out: Path) -> None:
    from effai import report

    result.save(out / "result.json")
    report.write_markdown(result, out / "report.md")
    report.write_html(result, out / "report.html")
