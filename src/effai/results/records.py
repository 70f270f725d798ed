"""The record of one variant (a study variant or a search trial): what it costs, how well it
does, what it loses against the base, which targets it fits, and what went wrong if it failed.

Every field but `name` has a default, so a later field (an artefact's path and sha256, an
accuracy interval, microcontroller firmware numbers) is one more line with a default, and
files written before it still read (see docs/decisions.md, "Result records").

>>> r = VariantRecord("int8_ptq", accuracy=0.98, cost=Cost(size_bytes=65_000,
...                   latency=Latency(p50_ms=0.2, runtime="onnxruntime", threads=1)))
>>> r.size_bytes, r.latency_ms, VariantRecord.from_dict(r.to_dict()) == r
(65000, 0.2, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from effai.results.evaluation import AccuracyInterval, Evaluation, Harm, Paired
from effai.results.serial import Record


@dataclass(frozen=True)
class Latency(Record):
    """Time per call in milliseconds: the median, its spread, and the conditions it was taken in."""

    p50_ms: float
    p90_ms: float | None = None
    p99_ms: float | None = None
    iqr_ms: float | None = None
    method: Literal["measured", "estimated"] = "measured"
    runtime: str = ""  # "onnxruntime", "torch", or the estimate's model ("roofline on rpi4")
    graph: str = ""  # what ran: "int8 graph", "fp32 eager"
    threads: int | None = None
    repeats: int | None = None
    load_avg: float | None = None  # 1-minute load average when timing started
    contended: bool = False  # wall times include waiting for a core (why: `contention`)
    cpu_wall_ratio: float | None = None  # the timed thread's CPU time / wall time over the calls
    run_queue: int | None = None  # runnable tasks (/proc/stat) around the timing
    contention: str = ""  # why it is contended, in words, from the measurement itself and the load
    slower_than_fp32: bool = False  # slower than the fp32 variant on the same runtime: no latency advantage
    how: str = ""  # the whole protocol in words (with any fallback), as the report's tooltip shows it

    def warnings(self) -> list[str]:
        """What to know before trusting or choosing this latency.

        >>> Latency(0.05, contended=True, contention="load average 6.0 on 2 cores", slower_than_fp32=True).warnings()
        ['contended (load average 6.0 on 2 cores)', 'slower than fp32']
        """
        return ([f"contended ({self.contention or 'busy machine'})"] if self.contended else []) + \
            (["slower than fp32"] if self.slower_than_fp32 else [])

    @classmethod
    def measured(cls, lat: Any, graph: str = "", how: str = "") -> Latency:
        """From an `effai.profile` latency measurement; `how` (default: runtime, graph, threads,
        repeats) gains a warning when the machine was contended.

        >>> from types import SimpleNamespace as NS
        >>> lat = NS(p50_ms=0.2, p90_ms=0.3, p99_ms=0.4, iqr_ms=0.05, runtime="torch", threads=1, repeats=50,
        ...          load_avg=3.5, contended=True, contention="load average 3.5 on 2 cores")
        >>> Latency.measured(lat, "eager fp32").how
        'torch eager fp32, 1 thread(s), p50 of 50 runs; contended (load average 3.5 on 2 cores): wall times include waiting for a core'
        """
        how = how or f"{lat.runtime} {graph}".strip() + f", {lat.threads} thread(s), p50 of {lat.repeats} runs"
        why = getattr(lat, "contention", "") or (f"load {lat.load_avg:.1f}" if lat.load_avg is not None else "")
        if lat.contended:
            how += f"; contended ({why}): wall times include waiting for a core"
        return cls(p50_ms=lat.p50_ms, p90_ms=lat.p90_ms, p99_ms=lat.p99_ms, iqr_ms=lat.iqr_ms,
                   runtime=lat.runtime, graph=graph, threads=lat.threads, repeats=lat.repeats,
                   load_avg=lat.load_avg, contended=lat.contended, how=how,
                   cpu_wall_ratio=getattr(lat, "cpu_wall_ratio", None), run_queue=getattr(lat, "run_queue", None),
                   contention=why if lat.contended else "")


@dataclass(frozen=True)
class Energy(Record):
    """Energy per call (one inference) and how it was obtained."""

    joules: float
    method: Literal["measured", "estimated"] = "estimated"
    model: str = ""  # the counter or the estimate's model, e.g. "Horowitz 45 nm"


@dataclass(frozen=True)
class Cost(Record):
    """What a variant costs: bytes in its storage format, counts, memory, time and energy."""

    size_bytes: int | None = None
    size_format: str = ""  # what those bytes hold ("int8 weights + fp32 per-channel scales")
    params: int | None = None
    macs: int | None = None
    peak_activation_bytes: int | None = None
    latency: Latency | None = None
    energy: Energy | None = None


@dataclass(frozen=True)
class TargetFit(Record):
    """Whether a variant fits one hardware target, and the roofline estimates on it."""

    fits: bool
    reason: str = ""
    dtype: str = ""
    latency_ms: float | None = None
    energy_j: float | None = None
    cost_usd_per_million: float | None = None
    co2_g_per_million: float | None = None
    cost_note: str = ""
    method: str = "estimated"  # "estimated" from the profile, or "built and run in QEMU" (MCU firmware, effai.mcu)
    # Microcontroller targets: flash and SRAM (from the linked ELF when built, from effai.hardware.fit when estimated),
    # how latency_ms was got, and whether the firmware's outputs matched effai's integer reference bit for bit.
    flash_bytes: int | None = None
    sram_bytes: int | None = None
    latency_method: str = ""
    bit_exact: bool | None = None


@dataclass(frozen=True)
class Artifact(Record):
    """The file a variant deploys as (`OUT/variants/NAME/`) and how its numbers were taken.

    `measured_on` says where the record's accuracy, per-class harm and robustness come from:
    "file" (the file's own predictions in `runtime`) or "torch" (the torch model: the file could
    not be written or run, `note` says why). `timing` is what its latency means, in the words of
    `effai.quantize.kernels` ("real kernel", "partly real kernel", "timed as fp32, labelled",
    "no kernel: not timed") with the op counts the runtime ran. `torch_accuracy` is the torch
    model's test accuracy, shown next to the file's.
    """

    file: str  # relative to the run folder: "variants/int8_ptq/model.onnx"
    sha256: str = ""
    bytes: int = 0
    runtime: str = ""  # "onnxruntime", or "effai.compress (torch)" for the .effdc file
    format: str = ""  # "ONNX int8 (the quantize_ simulation: its scales and codes)"
    settings: dict[str, Any] = field(default_factory=dict)
    command: str = ""  # runs the file in its runtime, from its folder
    measured_on: Literal["file", "torch"] = "file"
    timing: str = ""
    verification: str = ""  # the export gate's verdict on the file
    torch_accuracy: float | None = None
    note: str = ""

    def latency_caveat(self) -> str:
        """What to know about the file's latency ("" for a real kernel of its format).

        >>> Artifact("m.onnx", timing="timed as fp32, labelled (0 int8 / 5 float ops)").latency_caveat()
        'timed as fp32, labelled'
        """
        kind = self.timing.split(" (")[0]
        return "" if kind in ("", "real kernel") else kind


@dataclass(frozen=True)
class Manifest(Record):
    """`manifest.json` next to a variant's file (and in `OUT/best/`): the file, its hash, its
    runtime and settings, what it scored there, and the commands to run and to reproduce it."""

    variant: str
    artifact: Artifact
    accuracy: float | None = None
    accuracy_ci: AccuracyInterval | None = None
    dataset: str = ""
    n_test: int = 0
    input_shape: tuple[int, ...] = ()
    reproduce: str = ""  # the one command that builds this variant again


@dataclass(frozen=True)
class VariantRecord(Record):
    """One variant, built and measured, or failed with the error."""

    name: str
    status: Literal["ok", "failed"] = "ok"
    family: str = ""
    description: str = ""
    accuracy: float | None = None  # on the test set
    val_accuracy: float | None = None  # on the validation set, where one was measured
    dtype: str | None = None  # the dtype it deploys at (hardware fit, estimates)
    bits: float | None = None  # (mean) weight bits
    cost: Cost = field(default_factory=Cost)
    evaluation: Evaluation | None = None
    harm: Harm | None = None  # against the base; None for the base itself
    targets: dict[str, TargetFit] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    error: str | None = None  # why it failed ("TypeError: ...")
    details: dict[str, Any] = field(default_factory=dict)  # builder-specific facts (JSON), shown as is
    seconds: float | None = None  # to build, measure and evaluate it
    finished_at: str | None = None
    accuracy_ci: AccuracyInterval | None = None  # 95% interval of `accuracy`
    vs_base: Paired | None = None  # paired test against the base (fp32) on the test examples
    vs_leader: Paired | None = None  # ... against the most accurate feasible variant (set at selection)
    artifact: Artifact | None = None  # the file it deploys as, which its numbers were measured on

    @classmethod
    def failed(cls, name: str, error: BaseException | str, **fields) -> VariantRecord:
        """The record of a variant that could not be built or measured; the error in one line."""
        if isinstance(error, BaseException):
            text = str(error).splitlines()[0][:300] if str(error) else ""
            error = f"{type(error).__name__}: {text}"
        return cls(name, status="failed", error=error, **fields)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def size_bytes(self) -> int | None:
        return self.cost.size_bytes

    @property
    def macs(self) -> int | None:
        return self.cost.macs

    @property
    def latency_ms(self) -> float | None:
        return None if self.cost.latency is None else self.cost.latency.p50_ms

    @property
    def energy_j(self) -> float | None:
        return None if self.cost.energy is None else self.cost.energy.joules

    @property
    def robustness(self) -> float | None:
        """Mean accuracy over the corruptions measured (None without them)."""
        return None if self.evaluation is None else self.evaluation.mean_corrupted_accuracy

    @property
    def flagged(self) -> list[str]:
        """Classes and slices this variant harms (empty without a harm comparison)."""
        return [] if self.harm is None else self.harm.flagged
