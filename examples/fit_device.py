"""Will it fit? Check a model against microcontrollers, edge boards and GPUs, with roofline
estimates of latency and energy (labelled as estimates).

Run: .venv/bin/python examples/fit_device.py
Guide: docs/guides/fit-device.md
"""

from torch import nn

import effai

net = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (N,8,24,24)
    nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N,16,12,12)
    nn.Flatten(), nn.Linear(16 * 12 * 12, 4),
)
p = effai.profile(net, input_shape=(1, 1, 48, 48), latency=False)
for target in ["nano33ble", "stm32f746", "esp32s3", "rpi4", "coral_edgetpu", "jetson_orin_nano", "t4"]:
    for dtype in ("int8", "fp32"):
        f = effai.hardware.fit(p, target, dtype=dtype)
        if not f.fits and dtype == "int8":
            continue
        e = effai.hardware.estimate(p, target, dtype=dtype) if dtype in effai.hardware.load_catalogue()[target].spec.dtypes else None
        est = f"{e.latency_ms:9.4f} ms ({e.method})" if e else "no kernels for this dtype"
        print(f"{target:17s} {dtype:5s} fits={f.fits!s:5s} {est}")
        break
