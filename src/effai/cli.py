"""The `effai` command: a thin Typer shell over the Python API.

Each command parses its options, calls one API function, and prints (a Rich table, or
JSON with --json). Bad input raises `effai.errors.InputError`, which `main` turns into
exit code 2 and one line on stderr; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
import typer.core
from rich.console import Console

try:  # typer >= 0.20 vendors its own click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer on real click
    from click.exceptions import ClickException, UsageError  # type: ignore[assignment]

from effai import __version__
from effai.errors import CheckFailed, InputError

# Typer's help prints Python types (`<bool>`, `<list[Path]>`) and wraps required arguments in
# braces (`{model}`); a user reads plain words instead: flags show no type, values a word.
_PANELS = ("Measure", "Compress", "Deploy", "Compare")
_PLAIN_TYPE = {"str": "TEXT", "int": "INT", "int range": "INT", "float": "NUMBER", "float range": "NUMBER",
               "path": "PATH", "list[Path]": "PATH", "list[float]": "NUMBER"}


def _plain_metavars(command, ctx) -> None:
    for param in command.get_params(ctx):
        if param.metavar is not None:
            continue
        if isinstance(param, typer.core.TyperArgument):
            param.metavar = param.name.upper()
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]  # the help text says what it is
        elif getattr(param, "is_flag", False):
            param.metavar = ""
        else:
            label = param.display_type(ctx).strip("<>")
            param.metavar = _PLAIN_TYPE.get(label, label)


class HelpGroup(typer.core.TyperGroup):
    """A command group whose --help lists its panels by task order and shows no `<bool>`-style labels."""

    def list_commands(self, ctx):
        names = super().list_commands(ctx)
        panel = {n: getattr(self.commands[n], "rich_help_panel", None) for n in names}
        return sorted(names, key=lambda n: _PANELS.index(panel[n]) if panel[n] in _PANELS else len(_PANELS))

    def format_help(self, ctx, formatter):
        _plain_metavars(self, ctx)
        return super().format_help(ctx, formatter)


class HelpCommand(typer.core.TyperCommand):
    """A command whose --help shows MODEL, not {model}, and no `<bool>`-style type labels."""

    def format_help(self, ctx, formatter):
        _plain_metavars(self, ctx)
        return super().format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx):
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, typer.core.TyperArgument):
                name = param.metavar or param.name.upper()
                pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


app = typer.Typer(
    name="effai",
    cls=HelpGroup,
    help="Make neural networks efficient and prove it with measurements.\n\nExample: effai profile mobilenet_v2 --json",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)
TRUST_HELP = ("Let the model run code (a .py model file, any pickled object, a TorchScript program); "
              "only for files you trust.")
MODEL_ARGS_HELP = 'Keyword arguments of a .py model\'s class (or --arch file.py:ClassName), as JSON, e.g. \'{"width": 16}\'.'
OWN_MODEL = "your own path/to/file.py:ClassName (with --trust-code)"
_state = {"debug": False}


def print_json(obj) -> None:
    """Print one JSON object on stdout (what --json promises to machines)."""
    from effai.fileio import _json_default

    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _version(value: bool):
    if value:
        console.print(f"effai {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool | None = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    _state["debug"] = debug


# ---------------------------------------------------------------- zoo
zoo_app = typer.Typer(cls=HelpGroup, help="The model zoo.\n\nExample: effai zoo list --json", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo", rich_help_panel="Measure")


@zoo_app.command("list", cls=HelpCommand)
def zoo_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the zoo's models with their default input and published counts.

    Example: effai zoo list --json
    """
    from rich.table import Table

    from effai import zoo

    rows = [zoo.info(n) for n in zoo.names()]
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    t = Table(title="effai model zoo")
    for col in ("name", "family", "default input", "paper"):
        t.add_column(col)
    for r in rows:
        t.add_row(r.name, r.family, "x".join(map(str, r.input_shape)), r.paper)
    console.print(t)


# ---------------------------------------------------------------- train
@app.command("train", cls=HelpCommand, rich_help_panel="Compress")
def train_cmd(
    model: str = typer.Argument(..., help=f"Zoo name, e.g. lenet5, or {OWN_MODEL}; a checkpoint folder or state dict (with --arch) is trained further."),
    dataset: str = typer.Option("mnist5k", help="digits | mnist5k | fashion_mnist | synthetic | kws | keywords (text) | a path (IDX dir, .npz of images or token ids, image folder); options as kws:n_per_class=50."),
    epochs: int = typer.Option(10, min=1, help="Maximum epochs (early stopping may end sooner)."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture of a bare state dict: a zoo name or path/to/file.py:ClassName."),
    model_args: str | None = typer.Option(None, "--model-args", help=MODEL_ARGS_HELP),
    trust_code: bool = typer.Option(False, "--trust-code", "--trust-pickle", help=TRUST_HELP),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder: model.pt + model.json (best epoch) and last.pt (every epoch)."),
    lr: float = typer.Option(3e-3, help="Peak learning rate."),
    augment: bool = typer.Option(False, help="Random 2-pixel translations of training images."),
    label_smoothing: float = typer.Option(0.0, min=0.0, max=0.5, help="Label smoothing of the cross-entropy loss."),
    threads: int | None = typer.Option(None, min=1, help="torch threads (default: torch's own setting)."),
    batch_size: int = typer.Option(128, min=1),
    optimizer: str = typer.Option("adamw", help="adamw | sgd"),
    seed: int = typer.Option(0),
    width_mult: float | None = typer.Option(None, help="Width multiplier for the zoo model."),
    resume: bool = typer.Option(True, help="Resume from OUT/last.pt if present (an interrupted run continues)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
):
    """Train a zoo model on a data set and write a checkpoint directory.

    OUT gets model.pt + model.json (the best epoch; every other command loads the folder) and
    last.pt after each epoch: rerun the same command to resume an interrupted run (--no-resume starts over).

    Example: effai train lenet5 --dataset mnist5k --epochs 10 --out runs/lenet5
    """
    from effai import data as data_mod
    from effai import train
    from effai.zoo.loading import load_for_data
    from effai.zoo.usercode import parse_model_args

    args = parse_model_args(model_args)
    ds = data_mod.load(dataset, seed=seed)
    net = load_for_data(model, ds, arch=arch, trust_pickle=trust_code, model_args=args, onnx_refusal="cannot be trained",
                        **({} if width_mult is None else {"width_mult": width_mult})).model
    assert net is not None  # load_for_data refuses ONNX files
    cfg = train.TrainConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, seed=seed, augment=augment, threads=threads,
        label_smoothing=label_smoothing,
    )
    result = train.fit(net, ds, cfg, out_dir=out, resume=resume, progress=not as_json)
    if as_json:
        print_json(result.to_dict())
    else:
        console.print(
            f"[bold]{model}[/] on {ds.name}: test accuracy {result.test_accuracy:.2%} "
            f"({result.epochs_run} epochs, {result.train_seconds:.1f} s); checkpoint in {out}"
        )


# ---------------------------------------------------------------- capability commands
# Each capability adds its commands below, importing lazily inside the function so that
# `effai --help` stays fast and no optional dependency is imported at start-up.

# ---------------------------------------------------------------- study
@app.command("study", cls=HelpCommand, rich_help_panel="Compare")
def study_cmd(
    dataset: str = typer.Option("mnist5k", help="digits | mnist5k | fashion_mnist | synthetic | kws | keywords (text) | a path (IDX dir, .npz of images or token ids, image folder); options as kws:n_per_class=50."),
    model: str = typer.Option("lenet5", help=f"Base model: a zoo name or {OWN_MODEL} (trained once here), a checkpoint folder, or a state dict (with --arch)."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture of a bare state dict --model: a zoo name or path/to/file.py:ClassName."),
    model_args: str | None = typer.Option(None, "--model-args", help=MODEL_ARGS_HELP),
    trust_code: bool = typer.Option(False, "--trust-code", "--trust-pickle", help=TRUST_HELP),
    quick: bool = typer.Option(False, "--quick", help="Fewer variants, epochs and repeats (a smoke test, < 40 s)."),
    max_size: str | None = typer.Option(None, "--max-size", help="Largest model size, e.g. 250KB or 1.5MB."),
    max_latency: str | None = typer.Option(None, "--max-latency", help="Largest p50 latency, e.g. 5ms or 800us."),
    min_accuracy: float | None = typer.Option(None, "--min-accuracy", help="Lowest test accuracy, e.g. 0.97."),
    target: str | None = typer.Option(None, "--target", help="A hardware target the model must fit (effai targets)."),
    variants: str | None = typer.Option(None, "--variants", help="Comma-separated variant names (default: all)."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default runs/<model>-<dataset>)."),
    slices: Path | None = typer.Option(None, "--slices", help="Text file: one subgroup label per test example."),
    seed: int = typer.Option(0),
    force: bool = typer.Option(False, "--force", help="Start over in a folder that holds a different study."),
    as_json: bool = typer.Option(False, "--json", help="Print the selection and every variant's numbers as JSON."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Base model training epochs (default 12, quick 3)."),
    threads: int = typer.Option(1, "--threads", min=1, help="Threads for the latency measurements."),
    list_variants: bool = typer.Option(False, "--list-variants", help="List the variant names, one line each, and exit."),
):
    """Build compressed and alternative variants of a model, measure each, pick the best under constraints.

    Writes DIR/results.jsonl (resumable), DIR/result.json, DIR/report.md and DIR/report.html.

    Example: effai study --dataset mnist5k --max-size 250KB --max-latency 5ms --target nano33ble --out runs/demo

    Text: effai study --dataset keywords --model text_transformer --quick --out runs/text
    """
    import shlex

    from effai import study
    from effai.results import fmt_bytes, fmt_fraction, fmt_ms
    from effai.zoo.usercode import parse_model_args

    if list_variants:
        from effai.study.variants import VARIANTS

        for name, spec in VARIANTS.items():
            mark = "quick " if spec.quick is True else "      "
            note = f"(quick on {' and '.join(spec.quick)}) " if isinstance(spec.quick, tuple) else ""
            note += "" if len(spec.inputs) > 1 else f"({spec.inputs[0]} only) "
            print(f"{name:<22} {spec.family:<13} {mark}{note}{spec.description}")
        return
    cfg = study.StudyConfig(
        dataset=dataset, model=model, quick=quick, epochs=epochs, threads=threads, arch=arch,
        model_args=parse_model_args(model_args) or None, trust_code=trust_code,
        max_size=max_size, max_latency=max_latency,
        min_accuracy=min_accuracy, target=target, out=str(out) if out else None, seed=seed, force=force,
        slices=str(slices) if slices else None,
        variants=tuple(variants.split(",")) if variants else None,
    )
    _say_alias(target, cfg.target)
    result = study.run(cfg, progress=not as_json, command=shlex.join(["effai", *sys.argv[1:]]))
    sel = result.selection
    if as_json:
        out_dir = Path(result.out_dir)
        print_json({**sel.to_dict(), "base": result.base.to_dict(), "out_dir": result.out_dir,
                    "report": str(out_dir / "report.html"), "report_md": str(out_dir / "report.md"),
                    "result": str(out_dir / "result.json"),
                    "best_dir": result.best_dir, "reproduce": result.reproduce,
                    "contended": [r.name for r in result.variants if r.cost.latency and r.cost.latency.contended],
                    "variants": [_variant_summary(r) for r in result.variants]})
        return
    best = result.best
    if best:
        console.print(f"[bold green]best: {best.name}[/] {fmt_fraction(best.accuracy)}, {fmt_bytes(best.size_bytes)}, "
                      f"{fmt_ms(best.latency_ms)}: {sel.reason}", highlight=False)
        if result.best_dir and best.artifact is not None:
            console.print(f"ship: {Path(result.best_dir) / Path(best.artifact.file).name} ({best.artifact.runtime}; "
                          f"manifest {Path(result.best_dir) / 'manifest.json'}); rebuild it with: {result.reproduce}",
                          markup=False, highlight=False)
    else:
        console.print(f"[bold red]no variant meets the constraints[/]: {sel.reason}", highlight=False)
    for v in sel.rejected:
        console.print(f"  {v.name}: {v.kind}: {v.reason}", markup=False, highlight=False)
    for r in result.variants:
        lat = r.cost.latency
        if lat is not None and lat.warnings():
            console.print(f"[yellow]warning[/]: {r.name} latency {fmt_ms(lat.p50_ms)}: {'; '.join(lat.warnings())}",
                          highlight=False)
    console.print(f"report: {Path(result.out_dir) / 'report.html'} ({result.seconds:.0f} s)", highlight=False)

def _say_alias(given: str | None, canonical: str | None) -> None:
    """A target alias ("jetson") is never expanded in silence."""
    if given is not None and canonical is not None and given != canonical:
        err_console.print(f"note: target {given!r} is {canonical} (an alias)", highlight=False)


def _variant_summary(r) -> dict:
    """One variant of `effai study --json`: its record without the per-example evaluation."""
    return {**r.replace(evaluation=None, harm=None).to_dict(), "harmed_classes": r.flagged}


# ---------------------------------------------------------------- compress (Deep Compression)
@app.command("compress", cls=HelpCommand, rich_help_panel="Compress")
def compress_cmd(
    model: str = typer.Argument(..., help=f"Zoo name, checkpoint dir, state dict (+ --arch), TorchScript file or {OWN_MODEL}."),
    recipe: Path = typer.Option(..., "--recipe", help="Recipe YAML (see effai.compress.recipe)."),
    out: Path = typer.Option(..., "--out", help="Output directory for model.effdc and report.json."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture of a bare state dict: a zoo name or path/to/file.py:ClassName."),
    model_args: str | None = typer.Option(None, "--model-args", help=MODEL_ARGS_HELP),
    trust_pickle: bool = typer.Option(False, "--trust-code", "--trust-pickle", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Deep Compression: prune, share weights, Huffman-code; report the bytes at each stage.

    Example: effai compress lenet300_100 --recipe recipe.yaml --out runs/dc
    """
    from effai.compress.recipe import run
    from effai.zoo.usercode import parse_model_args

    result = run(model, recipe, out, arch=arch, trust_pickle=trust_pickle, progress=not as_json,
                 model_args=parse_model_args(model_args))
    if as_json:
        print_json(result)
        return
    from rich.table import Table

    t = Table(title=f"Deep Compression of {result['model']}")
    for col in ("stage", "bytes", "ratio", "accuracy"):
        t.add_column(col)
    for s in result["stages"]:
        t.add_row(s["stage"], f"{s['bytes']:,}", f"{s['ratio']:.1f}x", f"{s['accuracy']:.2%}")
    console.print(t)
    console.print(f"compressed file: {result['file']}")

# ---------------------------------------------------------------- export (deployable ONNX)
@app.command("export", cls=HelpCommand, rich_help_panel="Compress")
def export_cmd(
    model: str = typer.Argument(..., help=f"Zoo name, checkpoint folder, state dict (with --arch), TorchScript file, {OWN_MODEL}, or a study variant folder (DIR/best, DIR/variants/NAME)."),
    out: Path = typer.Option(..., "--out", help="The ONNX file to write."),
    dtype: str | None = typer.Option(None, help="int8 (the default for a model) | int8-dynamic (no calibration; transformers) | int4 (Linear weights, MatMulNBits) | fp16 | fp32; a study variant exports as it was measured."),
    dataset: str = typer.Option("mnist5k", help="The model's data (INT8 calibration, input shape): digits | mnist5k | fashion_mnist | synthetic | kws | keywords (text) | a path."),
    method: str = typer.Option("minmax", help="INT8 calibration: minmax | entropy | percentile."),
    runtime: str = typer.Option("onnxruntime", help="onnxruntime | openvino | auto (every installed runtime's INT8 candidates timed)."),
    tune: bool = typer.Option(False, "--tune", help="Time --runtime's INT8 candidates and keep the fastest accurate one."),
    max_sqnr_loss_db: float = typer.Option(1.0, min=0.0, help="Tuning: the most output SQNR (dB) a candidate may lose against the most accurate one."),
    min_sqnr_db: float = typer.Option(20.0, help="Verification floor: the file's output SQNR (dB) against the model, on test images."),
    min_agreement: float = typer.Option(0.99, min=0.0, max=1.0, help="Verification floor: top-1 agreement with the model on test images."),
    threads: int = typer.Option(1, min=1, help="Tuning: threads the candidates are timed on."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture of a bare state dict: a zoo name or path/to/file.py:ClassName."),
    model_args: str | None = typer.Option(None, "--model-args", help=MODEL_ARGS_HELP),
    trust_pickle: bool = typer.Option(False, "--trust-code", "--trust-pickle", help=TRUST_HELP),
    seed: int = typer.Option(0, help="Seed of the data split (calibration images come from its training part)."),
    as_json: bool = typer.Option(False, "--json", help="Print the export facts (and tuning candidates) as JSON."),
):
    """Write a deployable ONNX file: real INT8 (calibrated on the data set), int4 weights, FP16 or FP32.

    With --runtime auto (or --tune) the INT8 settings and runtime are chosen by timing them here.
    The file is run on up to 500 test images against the model; below --min-sqnr-db (or 99% top-1
    agreement) nothing is written and the command exits 2 naming the layers that lose most.

    A study's variant folder (DIR/best, DIR/variants/NAME) exports the file the study measured.

    Example: effai export runs/lenet5 --dataset mnist5k --dtype int8 --runtime auto --out lenet5_int8.onnx
    """
    from effai import data as data_mod
    from effai.fileio import ensure_dir
    from effai.quantize import export_onnx
    from effai.study import artifacts
    from effai.zoo.loading import load_for_data
    from effai.zoo.usercode import parse_model_args

    if out.suffix != ".onnx":
        raise InputError(f"--out {out}: expected a file name ending in .onnx")
    ensure_dir(out.parent, "--out ")
    if artifacts.is_variant_folder(model):
        shipped = artifacts.export_variant(Path(model), out, dtype)
        if as_json:
            print_json(shipped)
        else:
            console.print(f"wrote {out}: study variant {shipped['variant']} ({shipped['dtype']}), "
                          f"{shipped['bytes']:,} bytes, test accuracy {shipped['accuracy']:.2%} as measured; "
                          f"{shipped['source']}", highlight=False)
        return
    dtype = dtype or "int8"
    ds = data_mod.load(dataset, seed=seed)
    lm = load_for_data(model, ds, arch=arch, trust_pickle=trust_pickle, onnx_refusal="is exported already",
                       model_args=parse_model_args(model_args))
    assert lm.model is not None  # load_for_data refuses ONNX files
    with err_console.status(f"exporting {lm.name} as {dtype} for {runtime} ..."):
        info = export_onnx(lm.model.eval(), out, ds.train.tensors[0][:1], dtype,
                           calibration=ds.calibration() if dtype == "int8" else None, method=method,
                           runtime=runtime, tune=tune, max_sqnr_loss_db=max_sqnr_loss_db, threads=threads,
                           verify_inputs=ds.test.tensors[0][:500], min_sqnr_db=min_sqnr_db,
                           min_agreement=min_agreement)
    if as_json:
        print_json(info)
        return
    if info["candidates"]:
        from rich.table import Table

        t = Table(title="INT8 candidates (SQNR against the float model; latency timed here)")
        for col in ("runtime", "settings", "SQNR dB", "latency ms", "chosen"):
            t.add_column(col)
        for c in info["candidates"]:
            if c["error"]:
                t.add_row(c["runtime"], c["settings"], "-", "-", f"failed: {c['error'][:60]}")
            else:
                t.add_row(c["runtime"], c["settings"], f"{c['sqnr_db']:.1f}", f"{c['latency_ms']:.3f}",
                          "yes" if c["chosen"] else "")
        console.print(t)
        console.print(f"FP32 on onnxruntime, timed in the same rounds: {info['float_latency_ms']:.3f} ms", highlight=False)
    how = f"{info['runtime']}: {info['settings']['reason']}" if info["settings"] else info["runtime"]
    ratio = f" ({info['bytes'] / info['float_bytes']:.2f}x the FP32 file)" if info["float_bytes"] else ""
    sqnr = info["verification"]["sqnr_db"]
    console.print(f"wrote {out}: {dtype}, {info['bytes']:,} bytes{ratio}; for {how}; verified against the model: "
                  + ("exact" if sqnr is None else f"{sqnr:.1f} dB"), highlight=False)


# ---------------------------------------------------------------- hardware targets
@app.command("targets", cls=HelpCommand, rich_help_panel="Measure")
def targets_cmd(
    catalogue: list[Path] = typer.Option([], "--catalogue", help="Your own catalogue YAML (repeatable)."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Calibrate the host CPU now if it is not cached."),
    recalibrate: bool = typer.Option(False, "--recalibrate", help="Measure the host CPU again (ignore the cache)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """List the hardware targets: peak ops per dtype, bandwidth, memory, power and price.

    Example: effai targets --json
    """
    from effai import hardware

    if recalibrate:
        hardware.calibrate_host(recalibrate=True)
    rows = hardware.targets(extra=list(catalogue), calibrate_host_now=calibrate or recalibrate)
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    def si(v, unit):
        if v is None:
            return "-"
        for div, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if v >= div:
                return f"{v / div:.3g} {p}{unit}"
        return f"{v:.3g} {unit}"

    from rich import box

    from effai.results.units import fmt_capacity

    # Names are never wrapped (they are what --target takes); capacities in KiB/MiB/GiB as in `effai fit`.
    t = Table(title="effai hardware targets (titles and sources: effai targets --json, docs/hardware.md)",
              box=box.SIMPLE_HEAD, pad_edge=False, padding=0, caption="* research estimate")
    for col in ("name", "kind"):
        t.add_column(col, no_wrap=True)
    for col in ("dtypes", "peak (best dtype)", "mem BW", "RAM", "storage", "power"):
        t.add_column(col, min_width=max(len(w) for w in col.split()))  # wrapped at spaces, never cut
    t.add_column("price", no_wrap=True)
    for r in rows:
        best = max(r["peak_ops"].items(), key=lambda kv: kv[1], default=None)
        price = r["price"] or {}
        ptxt = (f"${price['per_hour']:g}/h" if price.get("per_hour") else
                f"${price['per_unit']:g}" if price.get("per_unit") else "-")
        kind = r["kind"] + ("*" if r["status"] == "research_estimate" else "")
        t.add_row(r["name"], kind, " ".join(r["dtypes"]), f"{si(best[1], 'OPS')} {best[0]}" if best else "-",
                  si(r["memory_bandwidth"], "B/s"), fmt_capacity(r["ram"]), fmt_capacity(r["storage"]),
                  si(r["power_peak_w"], "W") if r["power_peak_w"] else "-", ptxt)
    console.print(t)


@app.command("fit", cls=HelpCommand, rich_help_panel="Measure")
def fit_cmd(
    model: str = typer.Argument(..., help="Zoo name, checkpoint folder, state dict (with --arch), TorchScript or .onnx file."),
    target: str = typer.Option(..., "--target", help="Target name (effai targets), e.g. nano33ble, edgetpu, host."),
    dtype: str | None = typer.Option(None, "--dtype", help="Deploy dtype: int8 | int4 | fp16 | bf16 | fp8 | fp32 (default: the model's)."),
    input_shape: str | None = typer.Option(None, "--input", help="Input shape with batch, e.g. 1x3x96x96 (default: the model's)."),
    width_mult: float | None = typer.Option(None, help="Width multiplier (zoo models)."),
    resolution: int | None = typer.Option(None, help="Input resolution (zoo models)."),
    num_classes: int | None = typer.Option(None, help="Number of classes (zoo models)."),
    arch: str | None = typer.Option(None, help="Architecture of a bare state dict: a zoo name or path/to/file.py:ClassName."),
    model_args: str | None = typer.Option(None, "--model-args", help=MODEL_ARGS_HELP),
    arena: int | None = typer.Option(None, "--arena-bytes", min=0, help="Runtime arena bytes (default: the target's)."),
    catalogue: list[Path] = typer.Option([], "--catalogue", help="Your own catalogue YAML (repeatable)."),
    trust_pickle: bool = typer.Option(False, "--trust-code", "--trust-pickle", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: the fit report and the roofline estimate."),
):
    """Check that a model fits a target (dtype, RAM, flash/storage) and estimate its latency there.

    Exit code 1 when it does not fit.

    Example: effai fit mobilenet_v1_025_vww --target nano33ble --dtype int8
    """
    from effai import hardware
    from effai.profile import profile
    from effai.results.units import fmt_usd

    cat = hardware.load_catalogue(extra=list(catalogue))
    tgt = cat[target]  # unknown names fail here, before any model is loaded
    _say_alias(target, tgt.name)
    opts = {"width_mult": width_mult, "resolution": resolution, "num_classes": num_classes}
    lm, net, shape = _model_and_shape(model, arch, opts, trust_pickle, input_shape, model_args=model_args)
    on_host = tgt.name == "host"
    with err_console.status(f"profiling {lm.name} ({_describe(shape)}) ..."):
        prof = profile(net, input_shape=shape, latency=on_host, energy=False, name=lm.name,
                       threads=None)  # the host calibration (the estimate) uses torch's thread count
    report = hardware.fit(prof, tgt, dtype=dtype, runtime_arena_bytes=arena)
    est = None
    if report.dtype in tgt.spec.dtypes:
        est = hardware.estimate(prof, tgt, dtype=report.dtype)
    firmware = _firmware_numbers(lm, net, tgt, report.dtype, shape)
    if as_json:
        print_json({"fit": report.to_dict(), "estimate": est.to_dict() if est else None,
                    "firmware": firmware.to_dict() if firmware else None,
                    "mcu_numbers": ("built and run in QEMU" if firmware else "estimated") if tgt.spec.mcu else None})
    else:
        from rich.table import Table

        t = Table(title=f"{lm.name} on {tgt.spec.title} at {report.dtype}")
        for col in ("check", "needs", "has", "margin", "result"):
            t.add_column(col)
        for c in report.checks:
            if c.name == "dtype":
                t.add_row("dtype", report.dtype, ",".join(tgt.spec.dtypes), "-", "pass" if c.passed else "FAIL")
            else:
                t.add_row(c.name, f"{c.required / 1024:,.1f} KiB", f"{c.available / 1024:,.1f} KiB",
                          f"{c.margin_pct:+.1f}%", "pass" if c.passed else "FAIL")
        console.print(t)
        if est is not None:
            line = (f"estimate (roofline, {est.method}): {est.latency_ms:.3g} ms per inference"
                    + (f", {est.energy_j:.3g} J" if est.energy_j is not None else "")
                    + (f", {fmt_usd(est.usd_per_million)} and {est.kg_co2_per_million:.3g} kg CO2 per million"
                       if est.usd_per_million is not None and est.kg_co2_per_million is not None else ""))
            if est.measured_ms is not None:
                line += f"; measured {est.measured_ms:.3g} ms (error {est.error_pct:+.0f}%)"
            console.print(line, highlight=False)
        if tgt.spec.status == "research_estimate":
            console.print("note: research hardware, every number is a research estimate", highlight=False)
        _print_firmware(firmware, tgt)
        console.print(("[green]FITS[/] " if report.fits else "[red]DOES NOT FIT[/] ") + report.verdict(),
                      highlight=False)
    if firmware is not None and not firmware.fits:
        raise CheckFailed(f"{lm.name} {firmware.reason} (built)")
    if not report.fits and firmware is None:
        raise CheckFailed(report.verdict())


def _print_firmware(firmware, tgt) -> None:
    """The built firmware's numbers under `effai fit`'s table, or why the numbers are estimates."""
    if firmware is not None:
        console.print(f"firmware (built and run in QEMU, {firmware.qemu_machine}): flash {firmware.flash_bytes:,} B, "
                      f"SRAM {firmware.sram_bytes:,} B"
                      + (f", bit-exact {firmware.bit_exact}, estimated latency {firmware.estimated_latency_ms:.3g} ms "
                         "(instructions counted in QEMU x cycles/instruction)" if firmware.fits else
                         f"; {firmware.reason}"), highlight=False)
    elif tgt.spec.mcu is not None:
        console.print("microcontroller numbers above are estimated (for built ones: --dtype int8 with the Arm "
                      "toolchain and QEMU installed)", highlight=False)


def _firmware_numbers(lm, net, tgt, dtype: str, shape):
    """For an int8 fit on a microcontroller with the toolchain installed: the built firmware's
    numbers (effai.mcu.deploy into a temporary folder), else None and the estimate stands."""
    from effai import mcu

    if tgt.spec.mcu is None or dtype != "int8" or lm.model is None or mcu.toolchain_missing():
        return None
    import dataclasses
    import tempfile

    with tempfile.TemporaryDirectory(prefix="effai-fit-") as d, err_console.status(f"building {lm.name} firmware ..."):
        try:
            r = mcu.deploy(net, tgt, out=d, input_shape=shape[1:], n_inputs=2)
            return dataclasses.replace(r, elf=None)  # the folder is temporary
        except InputError as e:  # a model the compiler cannot lower keeps the estimate
            err_console.print(f"note: no firmware built ({e}); numbers are estimated", highlight=False)
            return None

# ---------------------------------------------------------------- deploy (microcontroller firmware)
@app.command("deploy", cls=HelpCommand, rich_help_panel="Deploy")
def deploy_cmd(
    model: str = typer.Argument(..., help=f"Zoo name, checkpoint folder, state dict (with --arch), {OWN_MODEL}, or int8 QOperator .onnx file."),
    target: str = typer.Option(..., "--target", help="Microcontroller target: nano33ble, stm32f746, nucleo_l4r5zi, corstone300."),
    dataset: str | None = typer.Option(None, "--dataset", help="Calibrate on and test with this data set (default: random inputs)."),
    out: Path = typer.Option(Path("runs/deploy"), "--out", help="Folder for deploy.json, firmware.elf and the C sources."),
    inputs: int = typer.Option(8, "--inputs", min=1, help="Test inputs run on the emulated MCU and checked bit for bit."),
    kernels: str | None = typer.Option(None, "--kernels", help="dsp (SMLAD/SXTB16, M4/M7) | mve (Helium, M55) | portable (plain C); default: the core's fastest."),
    input_shape: str | None = typer.Option(None, "--input", help="Input shape with batch, e.g. 1x1x49x10 (default: the model's)."),
    width_mult: float | None = typer.Option(None, help="Width multiplier (zoo models)."),
    resolution: int | None = typer.Option(None, help="Input resolution (zoo models)."),
    num_classes: int | None = typer.Option(None, help="Number of classes (zoo models)."),
    arch: str | None = typer.Option(None, "--arch", help="Architecture of a bare state dict: a zoo name or path/to/file.py:ClassName."),
    model_args: str | None = typer.Option(None, "--model-args", help=MODEL_ARGS_HELP),
    trust_pickle: bool = typer.Option(False, "--trust-code", "--trust-pickle", help=TRUST_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the deploy result as JSON."),
):
    """Compile an int8 model to Cortex-M firmware, run it in QEMU, check it bit for bit.

    Flash and SRAM come from the linked ELF, instructions from QEMU; latency is an estimate.
    Exit code 1 when the model does not fit the target (the linker's verdict).

    Example: effai deploy ds_cnn --target nano33ble --out runs/fw --json
    """
    from effai import mcu

    tgt = mcu.mcu_target(target)  # unknown or non-MCU targets fail before any model is loaded
    if kernels is not None and kernels not in tgt.core.kernels:
        raise InputError(f"--kernels: {tgt.core.name} runs {', '.join(tgt.core.kernels)}, got {kernels!r}")
    calib = test = labels = None
    if dataset is not None:
        from effai import data as data_mod
        from effai.zoo.loading import load_for_data, load_model

        ds = data_mod.load(dataset)
        net: Any
        if model.endswith(".onnx"):  # an int8 file: its own scales, the data set only tests it
            lm = load_model(model)
            net = lm.onnx_path
        else:
            from effai.zoo.usercode import parse_model_args

            lm = load_for_data(model, ds, arch=arch, trust_pickle=trust_pickle, model_args=parse_model_args(model_args))
            net, calib = lm.model, ds.calibration()
        test, labels, shape = ds.test.tensors[0][:inputs], ds.test.tensors[1][:inputs], None
    else:
        opts = {"width_mult": width_mult, "resolution": resolution, "num_classes": num_classes}
        lm, net, shape = _model_and_shape(model, arch, opts, trust_pickle, input_shape, model_args=model_args)
    with err_console.status(f"compiling {lm.name} for {tgt.name} ({tgt.core.name}), building, running in QEMU ..."):
        r = mcu.deploy(net, tgt.name, out=out, inputs=test, calibration=calib,
                       input_shape=None if shape is None else shape[1:], n_inputs=inputs, kernels=kernels, labels=labels)
    if as_json:
        print_json(r.to_dict())
    else:
        _print_deploy(lm.name, r, out)
    if not r.fits:
        raise CheckFailed(f"{lm.name} {r.reason}")
    if not r.bit_exact:
        raise CheckFailed(f"{lm.name}: firmware outputs differ from effai's integer reference on {r.mismatches} of "
                          f"{r.inputs_checked} inputs (exit code {r.exit_code})")


def _print_deploy(name: str, r, out: Path) -> None:
    from rich.table import Table

    if not r.fits:  # the one-line reason goes to stderr with exit code 1
        return
    t = Table(title=f"{name} on {r.target} ({r.core}, {r.kernels} kernels): per-layer instructions counted in QEMU")
    for col in ("layer", "op", "MACs", "instructions", "instr/MAC"):
        t.add_column(col)
    for layer in r.layers:
        ipm = layer.instructions_per_mac
        t.add_row(layer.name, layer.op, f"{layer.macs:,}", f"{layer.instructions:,}", f"{ipm:.2f}" if ipm else "-")
    console.print(t)
    console.print(f"built and run in QEMU ({r.qemu_machine}): bit-exact {r.bit_exact} on {r.inputs_checked} inputs; "
                  f"flash {r.flash_bytes:,} B, SRAM {r.sram_bytes:,} B (arena {r.arena_bytes:,} B, TFLite Micro's greedy "
                  f"plan {r.tflm_greedy_arena_bytes:,} B; stack used {r.stack_bytes:,} B); {r.instructions:,} instructions "
                  f"per inference" + (f"; firmware accuracy on them {r.accuracy:.1%}" if r.accuracy is not None else ""),
                  highlight=False)
    if r.onnxruntime_max_diff_lsb is not None:
        console.print(f"ONNX Runtime's int8 run of the same graph (QOperator, float requantization): "
                      f"{r.onnxruntime_equal_share:.1%} of output bytes equal, at most {r.onnxruntime_max_diff_lsb} "
                      "LSB apart", highlight=False)
    console.print(f"estimated latency {r.estimated_latency_ms:.3g} ms (an estimate: instructions counted in QEMU x a "
                  "cycles-per-instruction model of the core; the model is in deploy.json)", highlight=False)
    console.print(f"wrote {out / 'deploy.json'}, {r.elf} and the C sources in {out / 'build'}", highlight=False)


# ---------------------------------------------------------------- search
@app.command("search", cls=HelpCommand, rich_help_panel="Compare")
def search_cmd(
    config: Path = typer.Option(..., "--config", help="Search YAML: space, objectives, constraints, training."),
    out: Path = typer.Option(..., "--out", help="Output directory: pareto.json, report.html (and search.db)."),
    backend: str | None = typer.Option(None, help="local | ray (default: the config's, else local)."),
    storage: str | None = typer.Option(None, help="Optuna storage URL (default sqlite:///OUT/search.db)."),
    workers: int | None = typer.Option(None, min=1, help="Trials run at once (processes or Ray CPUs)."),
    ray_address: str | None = typer.Option(None, help="Existing Ray cluster, e.g. 10.0.0.1:6379 (else a local one)."),
    trust_code: bool = typer.Option(False, "--trust-code", help="Let a space.family of your own path/to/file.py:ClassName run its code (model_args: in the YAML)."),
    as_json: bool = typer.Option(False, "--json", help="Print the Pareto front as JSON."),
):
    """Search compressed variants for the Pareto front of accuracy vs. cost; rerun to resume.

    Example: effai search --config search.yaml --backend ray --workers 2 --out runs/search
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from effai import search

    cfg = search.load_config(config, out=str(out), backend=backend, storage=storage, workers=workers,
                             ray_address=ray_address, trust_code=trust_code or None)
    with Progress(TextColumn("search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=err_console,
                  disable=as_json or not err_console.is_terminal) as bar:  # stderr keeps one error line
        task = bar.add_task("", total=cfg.n_trials)

        def progress(done, total, msg):
            bar.update(task, completed=done, description=msg[:80])

        result = search.run(cfg, progress=progress)
    if as_json:
        print_json(result.to_dict()["front"])
        return
    from rich.table import Table

    from effai.search.report import FRONT_COLUMNS, front_cells

    t = Table(title=f"Pareto front ({len(result.trials)} trials, {len(result.front)} on the front; "
                    f"objectives {', '.join(result.objectives)})")
    for col in ("#", "variant", *FRONT_COLUMNS):
        t.add_column(col)
    for r in result.front:
        t.add_row(str(r.number), r.name, *front_cells(r.record))
    console.print(t)
    console.print(f"wrote {out / 'pareto.json'} and {out / 'report.html'}; storage {result.storage}")

# ---------------------------------------------------------------- profile
def _model_and_shape(model: str, arch, options: dict, trust_pickle: bool, input_shape: str | None, batch: int = 1,
                     model_args: str | None = None):
    """Load MODEL (see `effai.zoo.loading.load_model`) and settle its input shape, checked
    against the architecture: (LoadedModel, module or ONNX path, shape with batch)."""
    from effai import zoo
    from effai.zoo.loading import load_model
    from effai.zoo.usercode import parse_model_args

    with err_console.status(f"loading {model} ..."):
        lm = load_model(model, arch=arch, options=options, trust_pickle=trust_pickle,
                        model_args=parse_model_args(model_args))
    if input_shape is not None:
        from effai.profile.inputs import parse_specs

        specs = parse_specs(input_shape)
        shape = specs[0].shape if [s.name for s in specs] == ["input"] else specs
    elif lm.input_shape is not None:
        shape = (batch, *lm.input_shape)
    else:
        raise InputError(f"{model}: its input shape is unknown; pass --input, e.g. --input 1x3x224x224")
    if lm.model is not None and getattr(lm.model, "effai_arch", None) and isinstance(shape[0], int):
        zoo.check_input(lm.model, shape)
    return lm, (lm.onnx_path if lm.model is None else lm.model), shape


def _describe(shape) -> str:
    """`1x3x224x224`, or `input_ids:1x128:int64,...` for named inputs."""
    if shape and not isinstance(shape[0], int):
        return ",".join(f"{s.name}:{'x'.join(map(str, s.shape))}:{s.dtype}" for s in shape)
    return "x".join(map(str, shape))


@app.command("profile", cls=HelpCommand, rich_help_panel="Measure")
def profile_cmd(
    model: str = typer.Argument(..., help=f"Zoo name, checkpoint folder, state dict (with --arch), TorchScript or .onnx file, or {OWN_MODEL}."),
    input_shape: str | None = typer.Option(None, "--input", help="Input shape with batch, e.g. 1x3x224x224, or named inputs name:shape:dtype,... e.g. input_ids:1x128:int64,attention_mask:1x128:int64 (default: the model's)."),
    width_mult: float | None = typer.Option(None, help="Width multiplier (zoo models)."),
    resolution: int | None = typer.Option(None, help="Input resolution (zoo models)."),
    num_classes: int | None = typer.Option(None, help="Number of classes (zoo models)."),
    arch: str | None = typer.Option(None, help="Architecture of a bare state dict: a zoo name or path/to/file.py:ClassName."),
    model_args: str | None = typer.Option(None, "--model-args", help=MODEL_ARGS_HELP),
    runtime: str = typer.Option("torch", help="Latency runtime: torch | onnxruntime | openvino (an ONNX file: onnxruntime unless openvino)."),
    no_latency: bool = typer.Option(False, "--no-latency", help="Counts and memory only (fast)."),
    batch_size: int | None = typer.Option(None, min=1, help="Batch size (overrides the batch in --input)."),
    threads: int = typer.Option(1, min=1, help="Intra-op threads for latency (1 by default: reproducible; raise it to measure multi-threaded)."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write the per-layer table as CSV."),
    trust_pickle: bool = typer.Option(False, "--trust-code", "--trust-pickle", help=TRUST_HELP),
    top: int = typer.Option(15, min=1, help="Rows in the table (top layers by MACs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the profile as JSON."),
):
    """Count params, MACs/FLOPs, weight and peak activation memory, latency and energy of a model.

    Example: effai profile mobilenet_v2 --input 1x3x224x224 --no-latency
    """
    from effai.profile import profile
    from effai.profile.latency import RUNTIMES

    if runtime not in RUNTIMES:
        raise InputError(f"--runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    opts = {"width_mult": width_mult, "resolution": resolution, "num_classes": num_classes}
    lm, target, shape = _model_and_shape(model, arch, opts, trust_pickle, input_shape, batch_size or 1, model_args)
    with err_console.status(f"profiling {lm.name} ({_describe(shape)}) ..."):
        prof = profile(target, input_shape=shape, batch_size=batch_size, latency=not no_latency,
                       runtime=runtime, threads=threads, name=lm.name)
    if csv_path is not None:
        prof.to_csv(csv_path)
    if as_json:
        print_json(prof.to_dict())
    else:
        console.print(prof.table(top=top))
        if csv_path is not None:
            console.print(f"per-layer CSV: {csv_path}")


# ---------------------------------------------------------------- numerics
numerics_app = typer.Typer(cls=HelpGroup, help="Numeric formats and casting.\n\nExample: effai numerics table --json", no_args_is_help=True)
app.add_typer(numerics_app, name="numerics", rich_help_panel="Measure")


@numerics_app.command("table", cls=HelpCommand)
def numerics_table(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show every format: bits, range, smallest normal/subnormal, machine epsilon, hardware.

    Example: effai numerics table --json
    """
    from rich.table import Table

    from effai import numerics

    rows = numerics.table()
    if as_json:
        print_json(rows)
        return
    t = Table(title="effai numeric formats")
    for col in ("format", "bits", "min", "max", "smallest normal", "smallest subnormal", "eps", "hardware"):
        t.add_column(col)
    for r in rows:
        sub = "-" if r["smallest_subnormal"] is None else f"{r['smallest_subnormal']:.4g}"
        t.add_row(r["name"], str(r["bits"]), f"{r['min']:.4g}", f"{r['max']:.4g}", f"{r['smallest_normal']:.4g}",
                  sub, f"{r['eps']:.4g}", r["hardware"])
    console.print(t)


@numerics_app.command("cast", cls=HelpCommand)
def numerics_cast(
    values: list[float] = typer.Argument(..., help="Values to round (floats; nan and inf accepted)."),
    fmt: str = typer.Option(..., "--format", "-f", help="fp16 | bf16 | fp8_e4m3 | fp8_e5m2 | fp4_e2m1 | int8 | int4 | int2 | ternary | binary"),
    saturate: bool = typer.Option(False, help="Clamp overflow to the largest finite value."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Round values into a format (from float64) and show the result and the error.

    Example: effai numerics cast --format bf16 1.00390625 3.14159 --json
    """
    import numpy as np

    from effai import numerics

    x = np.asarray(values, dtype=np.float64)
    y = numerics.cast(x, fmt, saturate=saturate)
    name = numerics.get(fmt).name
    finite = np.isfinite(x) & np.isfinite(y)
    err = (y - x)[finite] if finite.any() else np.zeros(0)
    out = {
        "format": name,
        "input": x.tolist(),
        "output": y.tolist(),
        "abs_error": np.where(finite, np.abs(y - x), np.nan).tolist(),
        "max_abs_error": float(np.abs(err).max()) if err.size else None,
    }
    if as_json:
        print_json(out)
        return
    from rich.table import Table

    t = Table(title=f"cast to {name}")
    for col in ("input", "output", "abs error"):
        t.add_column(col, justify="right")
    for a, b, e in zip(out["input"], out["output"], out["abs_error"], strict=True):
        t.add_row(repr(a), repr(b), f"{e:.3g}")
    console.print(t)


def main() -> None:
    """Entry point: run the app, mapping InputError to exit 2 and CheckFailed to exit 1."""
    from effai import interrupts

    interrupts.install()  # Ctrl-C / SIGTERM stop at a safe point (never inside a storage commit)
    try:
        # Without standalone mode Typer returns (not raises) an Exit's code, and turns Ctrl-C
        # into Exit(130): honour it, or an interrupted run would exit 0 in silence.
        code = app(standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code != 0:
            if code == 130:
                code, line = interrupts.stopped()
                err_console.print(line)
            sys.exit(code)
    except InputError as e:
        if _state["debug"]:
            raise
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except CheckFailed as e:
        if _state["debug"]:
            raise
        err_console.print(str(e), markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        code, line = interrupts.stopped()
        err_console.print(line)
        sys.exit(code)
    except (UsageError, ClickException) as e:  # bad option values, missing arguments
        if _state["debug"]:
            raise
        msg = e.format_message().replace("\n", " ")
        err_console.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(e, UsageError) else e.exit_code)

if __name__ == "__main__":
    main()
