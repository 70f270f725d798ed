"""Microcontroller firmware: train a small classifier, compile it to a Cortex-M4 and run it in QEMU.

Run: .venv/bin/python examples/mcu_deploy.py
Guide: docs/guides/microcontroller.md
"""

import os

import effai

QUICK = os.environ.get("EFFAI_EXAMPLE_QUICK") == "1"

ds = effai.data.load("digits")
net = effai.zoo.create("lenet300_100", **effai.zoo.options_for("lenet300_100", ds))
effai.train.fit(net, ds, effai.train.TrainConfig(epochs=1 if QUICK else 10), progress=False)
x, y = ds.test.tensors[0][:16 if QUICK else 128], ds.test.tensors[1][:16 if QUICK else 128]
for target in ("nano33ble", "stm32f746"):
    r = effai.mcu.deploy(net, target, out=f"runs/mcu-example/{target}", inputs=x, labels=y,
                         calibration=ds.calibration())
    print(f"{target:10s} {r.core}: bit-exact {r.bit_exact} on {r.inputs_checked} inputs, accuracy {r.accuracy:.1%}, "
          f"flash {r.flash_bytes:,} B, SRAM {r.sram_bytes:,} B, {r.instructions:,} instructions, "
          f"{r.estimated_latency_ms:.2f} ms (estimated)")
