"""Profile one built variant: counts from its float structure, latency measured in ONNX Runtime
(torch eager as a fallback, and in --quick), energy measured where counters exist and estimated
otherwise, and fit / estimate on the hardware targets of the catalogue."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from effai.results import Energy, Latency, TargetFit

# Sub-8-bit weights run on int4 or int8 kernels where a target has none of their own; fp16/bf16 run
# as fp32. The first dtype of a chain is the one a target supporting none of them is judged at.
_FALLBACK = {"ternary": ["int4", "int8"], "binary": ["int4", "int8"], "int4": ["int4", "int8"], "int8": ["int8"], "fp16": ["fp16", "fp32"], "bf16": ["bf16", "fp16", "fp32"],
             "fp32": ["fp32"]}


def latency(built, example: torch.Tensor, calibration: torch.Tensor, threads: int,
            quick: bool) -> tuple[Latency, Energy | None]:
    """p50 latency of one image with its spread and conditions, and the energy measured over
    the timed calls where the machine has counters (None otherwise)."""
    from effai.profile import measure_latency
    from effai.profile.energy import Meter

    model = built.structure if built.structure is not None else built.model
    protocol: dict[str, Any] = ({"warmup": 3, "repeats": 10, "min_seconds": 0.05} if quick else
                                {"warmup": 10, "repeats": 50, "min_seconds": 0.1})
    meter = Meter("cpu")
    lat, graph, note = None, "", ""
    if built.onnx_dtype and not quick:
        from effai.quantize import export_onnx

        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "m.onnx"
                export_onnx(model.eval(), path, example, dtype=built.onnx_dtype, calibration=calibration[:64])
                with meter:
                    lat = measure_latency(str(path), example, runtime="onnxruntime", threads=threads, **protocol)
            graph = f"{built.onnx_dtype} graph"
        except Exception as e:  # noqa: BLE001 - export can fail for exotic layers: measure in torch instead
            note = f"ONNX export failed ({type(e).__name__}), so "
    if lat is None:
        with meter:
            lat = measure_latency(model.eval(), example, runtime="torch", threads=threads, **protocol)
        graph = "eager fp32"
    record = Latency.measured(lat, graph, how=f"{note}{lat.runtime}, {graph}, {lat.threads} thread(s), "
                                              f"p50 of {lat.repeats} runs")
    calls = lat.repeats + lat.warmup
    energy = None if meter.joules is None else Energy(meter.joules / calls, "measured",
                                                      f"{meter.source} over {calls} calls (whole package)")
    return record, energy


def counts(built, input_shape: tuple[int, ...]):
    """The effai Profile of the variant's float structure (no timing), with energy estimated at its bits."""
    from effai.profile import profile

    model = built.structure if built.structure is not None else built.model
    return profile(model.eval(), input_shape=(1, *input_shape), latency=False, bits=built.bits)


def targets(profile, deploy_dtype: str, names: list[str]) -> dict[str, TargetFit]:
    """Fit and roofline estimate on each target, at the variant's dtype or its fallback."""
    from effai import hardware

    cat = hardware.load_catalogue()
    out = {}
    for name in names:
        t = cat[name]
        chain = _FALLBACK.get(deploy_dtype, [deploy_dtype])
        dtype = next((d for d in chain if d in t.spec.dtypes), chain[0])
        out[name] = estimated_fit(profile, t, dtype)
    return out


def estimated_fit(profile, target, dtype: str) -> TargetFit:
    """One target's record from the profile alone: `effai.hardware.fit` and the roofline estimate.

    This is the study's target-fit step. For microcontroller targets, the numbers of the built
    firmware (`effai.mcu.deploy`: flash and SRAM from the linked ELF, instructions counted in
    QEMU) replace this estimate where the toolchain is present; `method` says which it is.
    """
    from effai import hardware

    f = hardware.fit(profile, target, dtype=dtype)
    fit = TargetFit(fits=f.fits, dtype=dtype, reason=f.verdict(), method="estimated")
    if dtype in target.spec.dtypes:
        e = hardware.estimate(profile, target, dtype=dtype)
        fit = fit.replace(latency_ms=e.latency_ms, energy_j=e.energy_j, cost_usd_per_million=e.usd_per_million,
                          co2_g_per_million=None if e.kg_co2_per_million is None else e.kg_co2_per_million * 1e3,
                          cost_note=f"{e.method} ({e.model_used}); {e.usd_method}; grid {e.grid_kg_per_kwh} kg/kWh")
    return fit
