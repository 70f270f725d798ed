"""Zoo x targets: does each model fit each catalogue target, and how fast would it run there?

For every zoo model at its default input (plus MobileNetV1 at width 0.25 and 1.0 at several
resolutions) the model is profiled once (counts and liveness peak, no timing), then
`effai.hardware.fit` is asked at int8 (or the target's narrowest dtype when it has no int8)
and at fp32, and `effai.hardware.estimate` gives the roofline latency at int8. All numbers
except the profile counts are estimates from the catalogue (docs/hardware.md).
Run: .venv/bin/python benchmarks/hardware_fit.py
"""

from __future__ import annotations

import time

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


def main():
    t0 = time.time()
    cat = hw.load_catalogue()
    rows, data = [], []
    for name, opts, label in models():
        m = zoo.create(name, **opts)
        shape = (1, *zoo.input_shape(name, **{k: v for k, v in opts.items() if k == "resolution"}))
        p = effai.profile(m, input_shape=shape, latency=False, energy=False, name=label)
        cells = []
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
            mark = "yes" if f_q.fits else "no (" + ", ".join(c.name for c in f_q.failed()) + ")"
            cells.append(f"{mark}<br>{est.latency_ms:.3g} ms" if f_q.fits else mark)
        rows.append([label, f"{p.total.params / 1e6:.2f}M", f"{p.total.macs / 1e6:.1f}M", *cells])
        data.append(rec)
        print(label, "done", flush=True)

    facts = {
        "mobilenet_v1_025_vww fits nano33ble int8": data_fit(data, "mobilenet_v1_025_vww", "nano33ble"),
        "mobilenet_v1 0.25-128 fits nano33ble int8": data_fit(data, "mobilenet_v1 0.25-128", "nano33ble"),
        "mobilenet_v1 1.0-224 fits nano33ble int8": data_fit(data, "mobilenet_v1 1.0-224", "nano33ble"),
        "edgetpu accepts a float model": any(r["targets"]["coral_edgetpu"]["fit_fp32"]["fits"] for r in data),
    }
    md = [
        "## Hardware fit: zoo x targets",
        "",
        "`benchmarks/hardware_fit.py`: each zoo model profiled once (counts, liveness peak), then "
        "`effai.hardware.fit` at int8 (research targets, Loihi 2 and photonic, are left out) and "
        "`effai.hardware.estimate` (roofline, **estimate**, batch 1, BatchNorm and activations fused). "
        "A cell is `yes` with the estimated latency, or `no` with the failed checks (ram: activations + "
        "runtime arena; storage: weights + runtime code; dtype). Targets, numbers and their sources: "
        "[hardware.md](hardware.md).",
        "",
        table(["model", "params", "MACs", *TARGETS], rows),
        "",
        "Facts the tests pin: " + "; ".join(f"{k}: **{v}**" for k, v in facts.items()) + ". "
        "At fp32 (the float model as profiled) the int8-only Coral Edge TPU refuses every zoo model on the `dtype` "
        "check (`fit_fp32` in benchmarks/results/hardware_fit.json).",
        "",
        machine_line() + f" Took {time.time() - t0:.0f} s.",
    ]
    write_results("hardware_fit", {"machine": machine(), "targets": TARGETS, "facts": facts, "models": data},
                  "\n".join(md))
    print("\n".join(md))


def data_fit(data, label, target):
    return next(r for r in data if r["model"] == label)["targets"][target]["fit"]["fits"]


if __name__ == "__main__":
    main()
