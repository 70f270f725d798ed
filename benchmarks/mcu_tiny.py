"""MLPerf Tiny's four models compiled by effai.mcu for a Cortex-M4, built with arm-none-eabi-gcc
and run in qemu-system-arm (mps2-an386): flash, SRAM, arena against TFLite Micro's greedy plan,
instructions per inference (counted in QEMU), and the latency they imply at 120 MHz on the
NUCLEO-L4R5ZI, the board of MLPerf Tiny's published Cortex-M4 results.

What is measured here: bit-exactness, sizes from the ELF, instruction counts (per layer: the
instructions per MAC of each layer type, DSP kernels and portable C). What is estimated:
latency = instructions x the Cortex-M4 cycles-per-instruction model of effai.mcu.targets / 120 MHz.
What is quoted: MLPerf Tiny v1.0 results on the NUCLEO-L4R5ZI (measured on the board by the
submitters): TFLite Micro reference and the best submission. The models here are untrained
(random weights): instruction counts do not depend on the weights' values, only on the shapes.
Noise control: every model is deployed a second time on other inputs and the instruction counts
compared (clamps branch on the data). Run: .venv/bin/python benchmarks/mcu_tiny.py
"""

from __future__ import annotations

import os
import tempfile
import time

from common import machine, machine_line, table, write_results

import effai

MODELS = {"ds_cnn": (1, 49, 10), "mobilenet_v1_025_vww": (3, 96, 96), "resnet8": (3, 32, 32), "fc_autoencoder": (640,)}
TASK = {"ds_cnn": "keyword spotting", "mobilenet_v1_025_vww": "visual wake words", "resnet8": "image classification",
        "fc_autoencoder": "anomaly detection"}
# MLPerf Tiny v1.0, NUCLEO-L4R5ZI (Cortex-M4F, 120 MHz), latency in ms, measured by the submitters
MLPERF = {"ds_cnn": (181.9, 43.2), "mobilenet_v1_025_vww": (600.6, 88.9), "resnet8": (704.2, 165.1),
          "fc_autoencoder": (10.05, 4.05)}
TARGET = "nucleo_l4r5zi"
OTHER_CORES = {"stm32f746": "dsp", "corstone300": "mve"}  # Cortex-M7 (SMLAD), Cortex-M55 (Helium)


LAYER_TYPES = ("conv", "depthwise_conv", "pointwise_conv", "fully_connected")


def per_type_ipm(r) -> dict[str, dict[str, float]]:
    """Instructions per MAC of each layer type present: the worst layer and the MAC-weighted mean."""
    out = {}
    for op in LAYER_TYPES:
        layers = [la for la in r.layers if la.op == op and la.macs]
        if layers:
            out[op] = {"worst": max(la.instructions / la.macs for la in layers),
                       "weighted": sum(la.instructions for la in layers) / sum(la.macs for la in layers)}
    return out


def main() -> None:
    t0, load0 = time.time(), os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for name, shape in MODELS.items():
            net = effai.zoo.create(name).eval()
            runs = {k: effai.mcu.deploy(net, TARGET, out=f"{d}/{name}-{k}", input_shape=shape, n_inputs=8, kernels=k)
                    for k in ("dsp", "portable")}
            again = effai.mcu.deploy(net, TARGET, out=f"{d}/{name}-again", input_shape=shape, n_inputs=8, seed=1)
            results[name] = {k: {**r.to_dict(), "instructions_per_mac": per_type_ipm(r)} for k, r in runs.items()}
            results[name]["repeat_instructions"] = again.instructions
            results[name]["other_cores"] = {
                t: effai.mcu.deploy(net, t, out=f"{d}/{name}-{t}", input_shape=shape, n_inputs=8, kernels=k).to_dict()
                for t, k in OTHER_CORES.items()}
            print(name, {k: (r.bit_exact, r.instructions, round(r.estimated_latency_ms, 1)) for k, r in runs.items()},
                  flush=True)
    m = machine()
    load1 = os.getloadavg()
    write_results("mcu_tiny", {"machine": m, "target": TARGET, "mlperf_tiny_ms": MLPERF, "results": results,
                               "loadavg_start": load0, "loadavg_end": load1, "seconds": time.time() - t0},
                  markdown(results, m, load0, load1, time.time() - t0))


def _ipm(res: dict, op: str) -> str:
    dsp, port = res["dsp"]["instructions_per_mac"].get(op), res["portable"]["instructions_per_mac"].get(op)
    if dsp is None:
        return "-"
    return f"{dsp['worst']:.2f} / {dsp['weighted']:.2f} ({port['weighted']:.0f})"


def markdown(results: dict, m: dict, load0, load1, seconds: float) -> str:
    rows, ipm, latency, cores = [], [], [], []
    for name, res in results.items():
        dsp, port = res["dsp"], res["portable"]
        ref, best = MLPERF[name]
        rows.append([f"{name} ({TASK[name]})", "yes" if dsp["bit_exact"] and port["bit_exact"] else "**no**",
                     f"{dsp['flash_bytes']:,}", f"{dsp['sram_bytes']:,}",
                     f"{dsp['arena_bytes']:,} / {dsp['tflm_greedy_arena_bytes']:,} "
                     f"({dsp['tflm_greedy_arena_bytes'] / dsp['arena_bytes']:.2f}x)",
                     f"{dsp['instructions'] / 1e6:.2f}M", f"{port['instructions'] / dsp['instructions']:.1f}x",
                     f"{100 * (res['repeat_instructions'] / dsp['instructions'] - 1):+.3f}%"])
        ipm.append([name, *(_ipm(res, op) for op in LAYER_TYPES)])
        latency.append([name, f"**{dsp['estimated_latency_ms']:.1f}**", f"{port['estimated_latency_ms']:.0f}",
                        f"{ref:g}", f"{best:g}", f"{dsp['estimated_latency_ms'] / best:.2f}x"])
        row = [name, f"{dsp['instructions'] / 1e6:.2f}M, {dsp['estimated_latency_ms']:.1f} ms"]
        for t in OTHER_CORES:
            o = res["other_cores"][t]
            row.append(f"{o['instructions'] / 1e6:.2f}M, {o['estimated_latency_ms']:.1f} ms"
                       + ("" if o["bit_exact"] else " (**not bit-exact**)"))
        cores.append(row)
    return f"""## Microcontroller firmware: MLPerf Tiny on a Cortex-M4 (`benchmarks/mcu_tiny.py`)

Each model compiled by `effai.mcu.deploy` for `{TARGET}` (Cortex-M4F, 120 MHz), built with
arm-none-eabi-gcc 12 (-O2) and run in qemu-system-arm 7.2 (`mps2-an386`) on 8 inputs. **Measured**
here: bit-exactness against effai's integer reference (DSP and portable kernels), flash and SRAM
from the ELF, arena of effai's plan against TFLite Micro's greedy plan of the same graph,
instructions per inference and per layer counted by a QEMU plugin. **Estimated**: latency =
instructions x 1.25 cycles/instruction (Cortex-M4 timing model, `effai.mcu.targets`) / 120 MHz;
QEMU models no cycles, flash wait states or bus stalls. **Quoted**: MLPerf Tiny v1.0 latency on the
NUCLEO-L4R5ZI at 120 MHz, **measured** on the board by the submitters: TFLite Micro reference and
best submission. The zoo models are untrained; instruction counts depend on shapes, not weights.
Noise control: a second deployment on other inputs (last column: its instruction count against the
first; branches in the clamps depend on the data, nothing else does).

{table(["model", "bit-exact", "flash B", "SRAM B", "arena: effai / TFLM greedy", "instructions (DSP)",
        "portable C / DSP instructions", "other inputs"], rows)}

Instructions per MAC by layer type on the Cortex-M4, **measured** (QEMU counts per layer): DSP
kernels, worst layer / MAC-weighted mean, and in brackets the portable C kernels' MAC-weighted mean.

{table(["model", "conv", "depthwise_conv", "pointwise_conv", "fully_connected"], ipm)}

Latency at 120 MHz: effai's firmware **estimated** from its instruction count, beside MLPerf Tiny's
Cortex-M4 results **measured** on the NUCLEO-L4R5ZI (different firmware, a real board: the estimate
has no wait states or stalls, so it is a lower bound more than a prediction).

{table(["model", "effai DSP kernels, ms (estimate)", "effai portable C, ms (estimate)",
        "MLPerf Tiny TFLM reference, ms (measured)", "MLPerf Tiny best, ms (measured)",
        "effai estimate / best measured"], latency)}

The same models on other cores (instructions counted in QEMU, bit-exact; latency an **estimate**
at each target's clock and cycles-per-instruction model: Cortex-M7 dual-issue 0.7 at 216 MHz;
Cortex-M55 1.0 at the AN547 image's 32 MHz, Helium instructions counted as one each):

{table(["model", "Cortex-M4 DSP, nucleo_l4r5zi 120 MHz", "Cortex-M7 DSP, stm32f746 216 MHz",
        "Cortex-M55 Helium, corstone300 32 MHz"], cores)}

{machine_line(m)} Load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end (instruction counts do
not depend on load). Took {seconds:.0f} s.
"""


if __name__ == "__main__":
    main()
