"""Roofline estimates: latency per layer, energy, dollars and CO2 per million inferences.

For every layer (batch as profiled):

    ops     = 2 x MACs + elementwise FLOPs
    bytes   = weights at the dtype + input and output activations at the dtype
    t_layer = max(ops / (peak_ops[dtype] x eff_compute x eff_kernel),
                  bytes / (bandwidth x eff_memory)) + per-layer overhead

`eff_*` and the overhead are the target's documented efficiency factors (catalogue YAML);
`eff_kernel` is a per-kernel multiplier (depthwise convolutions reach a smaller share of peak
than dense ones). On the host they are measured by micro-benchmarks (`calibrate_host`), and
the host's bandwidth is a curve over working-set sizes (caches, then DRAM). On deployment
targets BatchNorm and activations are fused into the layer before them (zero cost).

Energy is ops x J/op where the catalogue gives it, else peak power x latency. Dollars per
million inferences: rental per hour x time on cloud targets; electricity plus the unit price
amortised over 3 years of continuous use on devices. CO2 = energy x grid carbon intensity.
Everything here is labelled `method: "estimate"` with the model used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from effai.errors import InputError
from effai.hardware.accounting import (
    activation_scale,
    check_profile,
    is_fusable,
    layer_kind,
    layer_weight_bytes,
    profile_dtype,
    resolve_dtype,
)
from effai.hardware.catalogue import BITS

GRID_KG_PER_KWH = 0.475
GRID_SOURCE = ("IEA, Global Energy & CO2 Status Report 2019: world average carbon intensity of electricity "
               "~475 gCO2/kWh")
USD_PER_KWH = 0.15
USD_PER_KWH_SOURCE = "assumption: 0.15 USD/kWh, a typical retail electricity price"
AMORTISE_YEARS = 3.0
MODEL = ("roofline per layer: t = max(ops / (peak_ops[dtype] * eff_compute * eff_kernel), "
         "bytes / (bandwidth * eff_memory)) + per-layer overhead; ops = 2*MACs + elementwise FLOPs; "
         "bytes = weights + input + output activations at the dtype")


@dataclass(frozen=True)
class LayerEstimate:
    """One layer's roofline: its ops, bytes moved, both bounds and the one that wins."""

    name: str
    type: str
    kind: str
    ops: float
    bytes: float
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    latency_ms: float
    bound: str  # "compute" | "memory" | "overhead" | "fused"


@dataclass(frozen=True)
class Estimate:
    """A roofline estimate for one model on one target (always `method == "estimate"`)."""

    model: str
    target: str
    title: str
    dtype: str
    status: str
    latency_ms: float
    layers: list[LayerEstimate]
    energy_j: float | None
    energy_method: str
    usd_per_million: float | None
    usd_method: str
    kg_co2_per_million: float | None
    grid_kg_per_kwh: float
    grid_source: str
    measured_ms: float | None = None
    measured_how: str = ""
    error_pct: float | None = None  # (estimate - measured) / measured x 100
    assumptions: list[str] = field(default_factory=list)
    method: str = "estimate"
    model_used: str = MODEL

    @property
    def bound_counts(self) -> dict:
        out: dict[str, int] = {}
        for lay in self.layers:
            out[lay.bound] = out.get(lay.bound, 0) + 1
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bound_counts"] = self.bound_counts
        return d


def _bandwidth_at(target, nbytes: float) -> float:
    """Bytes/s for a working set of `nbytes`: the host's measured curve, else the catalogue figure."""
    eff = target.spec.efficiency.memory
    curve = (target.calibration or {}).get("bandwidth_curve") if target.calibration else None
    if not curve:
        return target.spec.memory_bandwidth.value * eff
    pts = sorted(curve)
    if nbytes <= pts[0][0]:
        return pts[0][1]
    for (s0, b0), (s1, b1) in zip(pts, pts[1:], strict=False):
        if nbytes <= s1:
            w = (math.log(nbytes) - math.log(s0)) / (math.log(s1) - math.log(s0))
            return math.exp(math.log(b0) + w * (math.log(b1) - math.log(b0)))
    return pts[-1][1]


def roofline(profile, target, dtype: str) -> list[LayerEstimate]:
    """Per-layer roofline of `profile` on `target` at `dtype` (see the module docstring)."""
    spec = target.spec
    eff = spec.efficiency
    peak = spec.peak_ops[dtype].value * eff.compute
    host = target.name == "host"
    scale = activation_scale(profile, dtype)
    in_shape = getattr(profile, "input_shape", None) or []
    prev_out = math.prod(in_shape) * BITS[profile_dtype(profile)] / 8 if in_shape else 0
    layers = getattr(profile, "layers", None) or []
    out = []
    if not layers:  # totals only: one pseudo-layer
        from types import SimpleNamespace

        t = profile.total
        layers = [SimpleNamespace(name="model", type="total", params=t.params, macs=t.macs,
                                  elementwise_flops=getattr(t, "elementwise_flops", 0),
                                  activation_bytes=t.peak_activation_bytes, output_shape=None, calls=1)]
    for lp in layers:
        kind = layer_kind(lp)
        act_out = (getattr(lp, "activation_bytes", 0) or 0)
        act_in = prev_out
        prev_out = act_out or prev_out
        name, typ = str(getattr(lp, "name", "")), str(getattr(lp, "type", ""))
        if not host and is_fusable(lp):
            out.append(LayerEstimate(name, typ, kind, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "fused"))
            continue
        macs = getattr(lp, "macs", 0) or 0
        ops = 2.0 * macs + (getattr(lp, "elementwise_flops", 0) or 0)
        nbytes = layer_weight_bytes(lp, dtype) + (act_in + act_out) * scale
        k_eff = eff.kernels.get(kind, 1.0)
        t_c = ops / (peak * k_eff) if ops else 0.0
        t_m = nbytes / _bandwidth_at(target, nbytes) if nbytes else 0.0
        calls = getattr(lp, "calls", 1) or 1
        over = eff.kernel_overhead_s.get(kind, eff.per_layer_s) * calls
        t = max(t_c, t_m) + over
        bound = "overhead" if over > max(t_c, t_m) else ("compute" if t_c >= t_m else "memory")
        out.append(LayerEstimate(name, typ, kind, ops, nbytes, t_c * 1e3, t_m * 1e3, over * 1e3, t * 1e3, bound))
    return out


def estimate(profile, target, dtype: str | None = None, *, grid_kg_per_kwh: float = GRID_KG_PER_KWH,  # noqa: C901 - argument checks, then energy and cost each with their documented fallbacks
             usd_per_kwh: float = USD_PER_KWH, power_w: float | None = None, catalogue=None) -> Estimate:
    """Estimate latency, energy, cost and CO2 of one inference of `profile` on `target`.

    On the host (`target="host"`), a profile with a measured latency gets `measured_ms` and the
    signed relative `error_pct` of the estimate against it.

    >>> import torch, effai
    >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16 * 30 * 30, 10))
    >>> p = effai.profile(m, input_shape=(1, 3, 32, 32), latency=False)
    >>> e = estimate(p, "stm32f746", dtype="int8")
    >>> e.method, e.latency_ms > 0, e.layers[1].bound, e.kg_co2_per_million > 0
    ('estimate', True, 'fused', True)
    """
    from effai.hardware.fit import _target

    check_profile(profile)
    for nm, v in (("grid_kg_per_kwh", grid_kg_per_kwh), ("usd_per_kwh", usd_per_kwh)):
        if not isinstance(v, (int, float)) or v < 0:
            raise InputError(f"{nm}: expected a non-negative number, got {v!r}")
    if power_w is not None and (not isinstance(power_w, (int, float)) or power_w <= 0):
        raise InputError(f"power_w: expected a positive number of watts, got {power_w!r}")
    lat = getattr(profile, "latency", None)
    if isinstance(target, str) and target.strip().lower() == "host" and catalogue is None:
        from effai.hardware.host import host_target

        t = host_target(threads=getattr(lat, "threads", None) if lat is not None else None)
    else:
        t = _target(target, catalogue)
    spec = t.spec
    dt = resolve_dtype(profile, dtype)
    if dt not in spec.dtypes:
        raise InputError(f"dtype: {t.name} does not run {dt} (supports {', '.join(spec.dtypes)}); "
                         "quantize the model or pass dtype=...")
    layers = roofline(profile, t, dt)
    secs = sum(lay.latency_ms for lay in layers) / 1e3
    ops = sum(lay.ops for lay in layers)
    assumptions = [f"efficiency: {spec.efficiency.source}"]
    if spec.status == "research_estimate":
        assumptions.append("research hardware: every number is a research estimate (orders of magnitude)")

    # energy
    if dt in spec.energy_per_op:
        e_op = spec.energy_per_op[dt]
        energy, e_method = ops * e_op.value, f"ops x {e_op.value * 1e12:.3g} pJ/op ({e_op.source})"
    elif power_w is not None:
        energy, e_method = power_w * secs, f"given power {power_w:g} W x estimated latency"
    elif spec.power.peak.value > 0:
        energy = spec.power.peak.value * secs
        e_method = f"peak power {spec.power.peak.value:g} W x estimated latency ({spec.power.peak.source})"
    else:
        energy, e_method = None, f"unknown: {spec.power.peak.source}"

    # dollars
    price = spec.price
    usd, usd_method = None, "no price in the catalogue"
    if price is not None and price.per_hour is not None and price.per_hour.value > 0:
        usd = price.per_hour.value / 3600 * secs * 1e6
        usd_method = f"rental {price.per_hour.value:g} USD/h x latency, batch as profiled, fully busy ({price.per_hour.source})"
    elif price is not None and price.per_unit is not None:
        hw = price.per_unit.value / (AMORTISE_YEARS * 365 * 24 * 3600 / secs) * 1e6 if secs > 0 else 0.0
        elec = (energy or 0.0) / 3.6e6 * usd_per_kwh * 1e6
        usd = hw + elec
        usd_method = (f"unit price {price.per_unit.value:g} USD amortised over {AMORTISE_YEARS:g} years of continuous "
                      f"use + electricity at {usd_per_kwh:g} USD/kWh ({USD_PER_KWH_SOURCE})")
    co2 = energy / 3.6e6 * grid_kg_per_kwh * 1e6 if energy is not None else None

    measured, how, err = None, "", None
    if t.name == "host" and lat is not None and getattr(lat, "p50_ms", None):
        measured = float(lat.p50_ms)
        how = f"effai.profile.measure_latency p50 ({lat.runtime}, {lat.threads} threads, {lat.repeats} repeats)"
        err = 100.0 * (secs * 1e3 - measured) / measured
    return Estimate(model=getattr(profile, "model", "model"), target=t.name, title=spec.title, dtype=dt,
                    status=spec.status, latency_ms=secs * 1e3, layers=layers, energy_j=energy,
                    energy_method=e_method, usd_per_million=usd, usd_method=usd_method,
                    kg_co2_per_million=co2, grid_kg_per_kwh=grid_kg_per_kwh,
                    grid_source=GRID_SOURCE if grid_kg_per_kwh == GRID_KG_PER_KWH else "given",
                    measured_ms=measured, measured_how=how, error_pct=err, assumptions=assumptions)
