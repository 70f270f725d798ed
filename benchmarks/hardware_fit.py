"""Zoo x targets: does each model fit each catalogue target, and how fast would it run there?

For every zoo model at its default input (plus MobileNetV1 at width 0.25 and 1.0 at several
resolutions) the model is profiled once (counts and liveness peak, no timing), then
`effai.hardware.fit` is asked at int8 (or the target's narrowest dtype when it has no int8)
and at fp32, and `effai.hardware.estimate` gives the roofline latency at int8. All numbers
except the profile counts are estimates from the catalogue (docs/hardware.md).
Run: .venv/bin/python benchmarks/hardware_fit.py
"""

from __future__ import annotations

from common import machine, machine_line, table, write_results

import effai
import effai.hardware as hw
from effai import zoo

TARGETS = ["nano33ble", "stm32f746", "esp32s3", "coral_edgetpu", "rpi4", "rpi5", "jetson_orin_nano", "phone_npu",
           "t4", "a100", "h100", "tpu_v4"]
EXTRA = [("mobilenet_v1", {"width_mult": 0.25, "resolution": 96}, "mobilenet_v1 0.25-96"),
         ("mobilenet_v1", {"width_mult": 0.25, "resolution": 128}, "mobilenet_v1 0.25-128"),
         ("mobilenet_v1", {"width_mult": 0.25, "resolution": 224}, "mobilenet_v1 0.25-224"),
         ("mobilenet_v1", {"width_mult": 1.0, "resolution": 224}, "mobilenet_v1 1.0-224")]


def models():
    for name in zoo.names():
        if name != "mobilenet_v1":
            yield name, {}, name
    yield from EXTRA


def pick_dtype(target) -> str:
    dts = target.spec.dtypes
    return "int8" if "int8" in dts else min(dts, key=lambda d: hw.catalogue.BITS[d])


def measure() -> dict:
    """Profile every model once and ask every target: the results JSON (without provenance)."""
    cat = hw.load_catalogue()
    data = []
    for name, opts, label in models():
        m = zoo.create(name, **opts)
        shape = (1, *zoo.input_shape(name, **{k: v for k, v in opts.items() if k == "resolution"}))
        p = effai.profile(m, input_shape=shape, latency=False, energy=False, name=label)
        rec = {"model": label, "input_shape": list(shape), "params": p.total.params, "macs": p.total.macs,
               "peak_activation_bytes_fp32": p.total.peak_activation_bytes, "targets": {}}
        for tname in TARGETS:
            t = cat[tname]
            dt = pick_dtype(t)
            f_q = hw.fit(p, t, dtype=dt)
            f_f = hw.fit(p, t)  # the float model as profiled
            est = hw.estimate(p, t, dtype=dt)
            rec["targets"][tname] = {"dtype": dt, "fit": f_q.to_dict(), "fit_fp32": f_f.to_dict(),
                                     "estimate_ms": est.latency_ms, "energy_j": est.energy_j}
        data.append(rec)
        print(label, "done", flush=True)
    facts = {
        "mobilenet_v1_025_vww fits nano33ble int8": data_fit(data, "mobilenet_v1_025_vww", "nano33ble"),
        "mobilenet_v1 0.25-128 fits nano33ble int8": data_fit(data, "mobilenet_v1 0.25-128", "nano33ble"),
        "mobilenet_v1 1.0-224 fits nano33ble int8": data_fit(data, "mobilenet_v1 1.0-224", "nano33ble"),
        "edgetpu accepts a float model": any(r["targets"]["coral_edgetpu"]["fit_fp32"]["fits"] for r in data),
    }
    return {"machine": machine(), "targets": TARGETS, "facts": facts, "models": data}


def cell(target: dict) -> str:
    """`yes<br>LATENCY ms` or `no (failed checks)`, as the table shows it."""
    f = target["fit"]
    if f["fits"]:
        return f"yes<br>{target['estimate_ms']:.3g} ms"
    return "no (" + ", ".join(c["name"] for c in f["checks"] if not c["passed"]) + ")"


def table_rows(results: dict) -> list[list]:
    return [[r["model"], f"{r['params'] / 1e6:.2f}M", f"{r['macs'] / 1e6:.1f}M",
             *(cell(r["targets"][t]) for t in results["targets"])] for r in results["models"]]


def render(results: dict) -> str:
    facts = results["facts"]
    return "\n".join([
        "## Hardware fit: zoo x targets",
        "",
        "`benchmarks/hardware_fit.py`: each zoo model profiled once (counts, liveness peak), then "
        "`effai.hardware.fit` at int8 (research targets, Loihi 2 and photonic, are left out) and "
        "`effai.hardware.estimate` (roofline, **estimate**, batch 1, BatchNorm and activations fused). "
        "A cell is `yes` with the estimated latency, or `no` with the failed checks (ram: activations + "
        "runtime arena; storage: weights + runtime code; dtype). Targets, numbers and their sources: "
        "[hardware.md](hardware.md). Every cell is deterministic: `make bench-check` reruns the whole table.",
        "",
        table(["model", "params", "MACs", *results["targets"]], table_rows(results)),
        "",
        "Facts the tests pin: " + "; ".join(f"{k}: **{v}**" for k, v in facts.items()) + ". "
        "At fp32 (the float model as profiled) the int8-only Coral Edge TPU refuses every zoo model on the `dtype` "
        "check (`fit_fp32` in benchmarks/results/hardware_fit.json).",
        "",
        machine_line(results["machine"]),
    ])


def reproduction(results: dict) -> dict:
    """The table's cells, keyed by model and column: what `make bench-check` compares."""
    heads = ["params", "MACs", *results["targets"]]
    return {"setting": {"models": [r["model"] for r in results["models"]], "targets": results["targets"]},
            "rows": {row[0]: dict(zip(heads, row[1:], strict=True)) for row in table_rows(results)}}


def reproduce() -> dict:
    return reproduction(measure())


def main():
    results = measure()
    results["reproduce"] = reproduction(results)
    write_results("hardware_fit", results, render(results))
    print(render(results))


def data_fit(data, label, target):
    return next(r for r in data if r["model"] == label)["targets"][target]["fit"]["fits"]


if __name__ == "__main__":
    main()
