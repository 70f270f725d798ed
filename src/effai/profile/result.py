"""The Profile result: dataclasses, JSON (the DESIGN schema), CSV and the Rich table."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, field

from effai.profile.energy import Energy
from effai.profile.latency import Latency
from effai.results.units import fmt_bytes, fmt_count

FLOPS_NOTE = ("flops = 2 x MACs of conv/linear/matmul/attention; elementwise_flops (bias, norm, activation, "
              "pooling, softmax, residual adds) are reported separately; flops_all = flops + elementwise_flops")


@dataclass
class Total:
    """Whole-model totals."""

    params: int
    macs: int
    flops: int
    elementwise_flops: int
    weight_bytes: int
    peak_activation_bytes: int
    peak_at: str | None = None
    allocator_peak_bytes: int | None = None
    allocator_note: str = ""

    @property
    def flops_all(self) -> int:
        return self.flops + self.elementwise_flops

    def to_dict(self) -> dict:
        return {**asdict(self), "flops_all": self.flops_all}


@dataclass
class LayerProfile:
    """One executed leaf module, or one functional op run directly in a container (`path/op`)."""

    name: str
    type: str
    output_shape: list | None
    params: int
    macs: int
    flops: int
    elementwise_flops: int = 0
    activation_bytes: int = 0
    calls: int = 1
    latency_ms: float | None = None
    ops: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Profile:
    """What a model costs: counts, memory, latency and energy. See `effai.profile.profile`."""

    model: str
    input_shape: list
    total: Total
    layers: list[LayerProfile]
    latency: Latency | None = None
    energy: Energy | None = None
    uncounted: list[dict] = field(default_factory=list)
    dtype: str = "float32"
    source: str = "torch"  # "torch" (dispatch-level count) | "onnx" (ONNX graph count)
    notes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The `effai profile --json` object (DESIGN schema, plus extra keys)."""
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "dtype": self.dtype,
            "source": self.source,
            "total": self.total.to_dict(),
            "layers": [lp.to_dict() for lp in self.layers],
            "latency": self.latency.to_dict() if self.latency else None,
            "energy": self.energy.to_dict() if self.energy else None,
            "uncounted": list(self.uncounted),
            "notes": {"flops": FLOPS_NOTE, **self.notes},
        }

    def csv_text(self) -> str:
        buf = io.StringIO()
        cols = ["name", "type", "output_shape", "params", "macs", "flops", "elementwise_flops",
                "activation_bytes", "calls", "latency_ms", "ops"]
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for lp in self.layers:
            shape = "x".join(map(str, lp.output_shape)) if lp.output_shape else ""
            ops = ";".join(f"{k}:{v}" for k, v in lp.ops.items())
            lat = "" if lp.latency_ms is None else f"{lp.latency_ms:.6f}"
            w.writerow([lp.name, lp.type, shape, lp.params, lp.macs, lp.flops, lp.elementwise_flops,
                        lp.activation_bytes, lp.calls, lat, ops])
        return buf.getvalue()

    def to_csv(self, path: str | os.PathLike):
        """Write the per-layer table as CSV (atomically) and return the path."""
        from effai.fileio import write_atomic

        return write_atomic(path, self.csv_text())

    def table(self, top: int = 15):
        """A Rich renderable: top layers by MACs with their memory and latency shares, and totals."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        t = self.total
        tab = Table(title=f"{self.model}  input {'x'.join(map(str, self.input_shape))}  ({self.dtype})",
                    show_lines=False, box=box.SIMPLE_HEAD, pad_edge=False, padding=0)  # 80 columns fit
        lat_total = sum(lp.latency_ms or 0 for lp in self.layers)
        rows = sorted(self.layers, key=lambda lp: (lp.macs, lp.elementwise_flops), reverse=True)[:top]
        # Layer names are what a user greps for: never cut (folded past 40 columns); without
        # per-layer timings there is no latency column at all.
        longest = max((len(lp.name) for lp in rows), default=5)
        tab.add_column("layer", min_width=min(longest, 40), overflow="fold")
        tab.add_column("type", overflow="fold")
        tab.add_column("output", overflow="fold")
        # Two-line headers keep the numeric columns narrow; "% time" is each layer's latency share.
        for col in ("params", "MACs", "%\nMACs", "out\nbytes") + (("%\ntime",) if lat_total else ()):
            tab.add_column(col, justify="right")
        for lp in rows:
            share_lat = f"{100 * lp.latency_ms / lat_total:.1f}" if lat_total and lp.latency_ms is not None else "-"
            tab.add_row(lp.name, lp.type, "x".join(map(str, lp.output_shape or [])), f"{lp.params:,}",
                        fmt_count(lp.macs), f"{100 * lp.macs / t.macs:.1f}" if t.macs else "-",
                        fmt_bytes(lp.activation_bytes), *((share_lat,) if lat_total else ()))
        lines = [
            f"params {t.params:,}   MACs {fmt_count(t.macs)}   FLOPs {fmt_count(t.flops)} (+ {fmt_count(t.elementwise_flops)} "
            f"elementwise, counted separately)",
            f"weights {fmt_bytes(t.weight_bytes)}   peak activations {fmt_bytes(t.peak_activation_bytes)} "
            f"(liveness over the executed graph; peak at {t.peak_at}); allocator: "
            + (fmt_bytes(t.allocator_peak_bytes) if t.allocator_peak_bytes is not None else t.allocator_note),
        ]
        if self.latency:
            la = self.latency
            lines.append(f"latency ({la.runtime}, {la.threads} thread{'s' if la.threads != 1 else ''}, batch {la.batch_size}, {la.repeats} repeats): "
                         f"p50 {la.p50_ms:.3f} ms  p90 {la.p90_ms:.3f}  p99 {la.p99_ms:.3f}  IQR {la.iqr_ms:.3f}  "
                         f"-> {la.throughput:,.1f} samples/s")
            if la.contended:
                lines.append(contended_line(la))
        if self.energy:
            lines.append(f"energy {self.energy.joules:.3g} J per inference ({energy_how(self.energy)})")
        if self.uncounted:
            lines.append("uncounted ops (not zero, unknown): "
                         + ", ".join(f"{u['op']} in {u['layer']}" for u in self.uncounted[:10]))
        return Group(tab, *(Text(x) for x in lines))


def energy_how(energy) -> str:
    """How an energy number was taken, said once: the detail's first clause, prefixed by the
    method unless the detail already starts with it.

    >>> from types import SimpleNamespace as E
    >>> energy_how(E(method="estimated", detail="estimated with Horowitz 45 nm energies; weights once"))
    'estimated with Horowitz 45 nm energies'
    >>> energy_how(E(method="measured", detail="RAPL package counter, 30 runs"))
    'measured: RAPL package counter, 30 runs'
    """
    how = (energy.detail or "").split(";")[0].strip()
    if not how:
        return energy.method
    return how if how.lower().startswith(energy.method.lower()) else f"{energy.method}: {how}"


def contended_line(la) -> str:
    """The warning under a contended latency, with advice that works from Python and the CLI.

    >>> from types import SimpleNamespace as L
    >>> contended_line(L(contention="3 runnable tasks on 2 cores", load_avg=2.0, cpu_p50_ms=0.5, threads=2))
    'warning: contended (3 runnable tasks on 2 cores): wall times include waiting for a core (CPU time p50 0.500 ms); measure with 1 thread (threads=1; CLI --threads 1) or on a quieter machine'
    """
    advice = ("measure with 1 thread (threads=1; CLI --threads 1) or on a quieter machine" if la.threads > 1 else
              "measure on a quieter machine")
    return (f"warning: contended ({la.contention or f'load average {la.load_avg}'}): wall times include waiting "
            f"for a core (CPU time p50 {la.cpu_p50_ms:.3f} ms); {advice}")
