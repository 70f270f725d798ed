"""Profile one built variant: counts from its float structure, latency measured on its own file
in its runtime (study.artifacts), energy measured where counters exist and estimated otherwise,
and fit / estimate on the hardware targets of the catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from effai.results import Energy, Latency, TargetFit

# Sub-8-bit weights run on int4 or int8 kernels where a target has none of their own; fp16/bf16 run
# as fp32. The first dtype of a chain is the one a target supporting none of them is judged at.
_FALLBACK = {"ternary": ["int4", "int8"], "binary": ["int4", "int8"], "int4": ["int4", "int8"], "int8": ["int8"], "fp16": ["fp16", "fp32"], "bf16": ["bf16", "fp16", "fp32"],
             "fp32": ["fp32"]}


def latency(deployed, example: torch.Tensor, threads: int, quick: bool) -> tuple[Latency, Energy | None]:
    """p50 latency of one input on the variant's own file in its runtime (`deployed`, from
    `study.artifacts.save`), with its spread and conditions, and the energy measured over the
    timed calls where the machine has counters (None otherwise)."""
    from effai.profile import measure_latency
    from effai.profile.energy import Meter

    protocol: dict[str, Any] = ({"warmup": 3, "repeats": 10, "min_seconds": 0.05} if quick else
                                {"warmup": 10, "repeats": 50, "min_seconds": 0.1})
    meter = Meter("cpu")
    art = deployed.artifact
    with meter:
        if deployed.runtime == "onnxruntime":
            lat = measure_latency(str(deployed.timed), example, runtime="onnxruntime", threads=threads, **protocol)
        else:
            lat = measure_latency(deployed.timed.eval(), example, runtime="torch", threads=threads, **protocol)
    graph = f"{Path(art.file).name}, {art.timing.split(' (')[0]}"
    record = Latency.measured(lat, graph, how=f"{lat.runtime}, the variant's file {art.file}: {art.timing}; "
                                              f"{lat.threads} thread(s), p50 of {lat.repeats} runs")
    calls = lat.repeats + lat.warmup
    energy = None if meter.joules is None else Energy(meter.joules / calls, "measured",
                                                      f"{meter.source} over {calls} calls (whole package)")
    return record, energy


def counts(built, input_shape: tuple[int, ...]):
    """The effai Profile of the variant's float structure (no timing), with energy estimated at its bits."""
    from effai.profile import profile

    model = built.structure if built.structure is not None else built.model
    return profile(model.eval(), input_shape=(1, *input_shape), latency=False, bits=built.bits)


BUILT_IN_QEMU = "built and run in QEMU"
FIRMWARE_INPUTS = 4  # test inputs run on the emulated MCU per variant: enough for bit-exactness, short in QEMU


def targets(profile, deploy_dtype: str, names: list[str], built=None, ctx=None, variant: str = "") -> dict[str, TargetFit]:
    """Fit and roofline estimate on each target, at the variant's dtype or its fallback; on a
    microcontroller with the toolchain installed, an int8 variant's (`built`) firmware numbers."""
    from effai import hardware

    cat = hardware.load_catalogue()
    out = {}
    for name in names:
        t = cat[name]
        chain = _FALLBACK.get(deploy_dtype, [deploy_dtype])
        dtype = next((d for d in chain if d in t.spec.dtypes), chain[0])
        out[name] = estimated_fit(profile, t, dtype)
        if built is not None and ctx is not None and deploy_dtype == dtype == "int8" and t.spec.mcu is not None:
            out[name] = firmware_fit(out[name], built.model, t, ctx, ctx.out / "firmware" / variant / name)
    return out


def estimated_fit(profile, target, dtype: str) -> TargetFit:
    """One target's record from the profile alone: `effai.hardware.fit` and the roofline estimate.

    This is the study's target-fit step. For microcontroller targets, `firmware_fit` replaces
    this estimate with the built firmware's numbers where the toolchain is present; `method`
    says which it is.
    """
    from effai import hardware

    f = hardware.fit(profile, target, dtype=dtype)
    need = {c.name: int(c.required) for c in f.checks}
    fit = TargetFit(fits=f.fits, dtype=dtype, reason=f.verdict(), method="estimated")
    if target.spec.mcu is not None:
        fit = fit.replace(flash_bytes=need.get("storage"), sram_bytes=need.get("ram"))
    if dtype in target.spec.dtypes:
        e = hardware.estimate(profile, target, dtype=dtype)
        fit = fit.replace(latency_ms=e.latency_ms, energy_j=e.energy_j, cost_usd_per_million=e.usd_per_million,
                          co2_g_per_million=None if e.kg_co2_per_million is None else e.kg_co2_per_million * 1e3,
                          cost_note=f"{e.method} ({e.model_used}); {e.usd_method}; grid {e.grid_kg_per_kwh} kg/kWh",
                          latency_method="estimated (roofline from the profile)")
    return fit


def firmware_fit(estimate: TargetFit, model, target, ctx, out: Path) -> TargetFit:
    """`estimate` with the numbers of `model`'s firmware for the microcontroller `target`
    (effai.mcu.deploy: flash and SRAM from the linked ELF, fits from the linker, latency from the
    instructions counted in QEMU); `estimate` itself without the toolchain or for a model the
    compiler cannot lower (the reason says why)."""
    from effai import mcu

    if mcu.toolchain_missing():
        return estimate
    x, y = (t[:FIRMWARE_INPUTS] for t in ctx.data.test.tensors)
    try:
        r = mcu.deploy(model, target, out=out, inputs=x, calibration=ctx.calibration, labels=y)
    except Exception as e:  # noqa: BLE001 - a model the MCU compiler cannot take keeps its estimate, said why
        return estimate.replace(reason=f"{estimate.reason}; no firmware ({type(e).__name__}: {str(e)[:120]})")
    how = f"{r.kernels} kernels on {r.core}, {r.inputs_checked} inputs in {r.qemu_machine}"
    reason = r.reason or (f"firmware fits: flash {r.flash_bytes:,} B, SRAM {r.sram_bytes:,} B (linked); "
                          f"bit-exact {r.bit_exact} ({how})")
    return estimate.replace(fits=r.fits, reason=reason, method=BUILT_IN_QEMU, flash_bytes=r.flash_bytes,
                            sram_bytes=r.sram_bytes, latency_ms=r.estimated_latency_ms,
                            latency_method=r.latency_method, bit_exact=r.bit_exact if r.fits else None)
