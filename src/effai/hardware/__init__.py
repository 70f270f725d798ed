"""effai.hardware: a catalogue of inference targets, fit checks and roofline estimates.

- `load_catalogue(extra=[path])`: the built-in YAML catalogue (server GPUs, Cloud TPU v4,
  Coral Edge TPU, Jetson Orin Nano, Raspberry Pi 4/5, a phone NPU, microcontrollers,
  research entries for Loihi 2 and a photonic core) plus your own files; `host` is this
  machine's CPU, calibrated by micro-benchmarks (`calibrate_host`) and cached.
- `fit(profile, target, dtype=None)`: dtype support, RAM and flash/storage with margins.
- `estimate(profile, target, dtype=None)`: roofline latency per layer, energy, dollars and
  kg CO2 per million inferences; on the host, compared with the measured latency.

>>> import torch, effai
>>> p = effai.profile(torch.nn.Linear(64, 10), input_shape=(1, 64), latency=False)
>>> effai.hardware.fit(p, "nano33ble", dtype="int8").fits
True
>>> round(effai.hardware.estimate(p, "t4", dtype="int8").latency_ms, 4)   # one layer: 5 us launch
0.005
"""

from effai.hardware.catalogue import Catalogue, Target, TargetSpec, load_catalogue, normalise_dtype
from effai.hardware.estimate import Estimate, LayerEstimate, estimate, roofline
from effai.hardware.fit import Check, FitReport, fit
from effai.hardware.host import calibrate_host, host_target

__all__ = ["Catalogue", "Check", "Estimate", "FitReport", "LayerEstimate", "Target", "TargetSpec", "calibrate_host",
           "estimate", "fit", "host_target", "load_catalogue", "normalise_dtype", "roofline", "targets"]


def targets(extra=None, calibrate_host_now: bool = False) -> list[dict]:
    """One summary row per target (host included when calibrated or `calibrate_host_now`).

    >>> rows = targets()
    >>> next(r for r in rows if r["name"] == "coral_edgetpu")["dtypes"]
    ['int8']
    """
    from effai.hardware.host import cache_dir

    cat = load_catalogue(extra)
    rows: list[dict] = []
    for name in cat.names():
        if name == "host" and not (calibrate_host_now or (cache_dir() / "host.json").exists()):
            rows.append({"name": "host", "title": "This machine's CPU (not calibrated yet: effai targets --calibrate)",
                         "kind": "cpu", "status": "uncalibrated", "dtypes": [], "peak_ops": {},
                         "memory_bandwidth": None, "ram": None, "storage": None, "power_peak_w": None,
                         "price": None, "file": None})
            continue
        t = cat[name]
        s = t.spec
        price = None
        if s.price is not None:
            price = ({"per_hour": s.price.per_hour.value} if s.price.per_hour else {}) | (
                {"per_unit": s.price.per_unit.value} if s.price.per_unit else {})
        rows.append({"name": name, "title": s.title, "kind": s.kind, "status": s.status, "dtypes": list(s.dtypes),
                     "peak_ops": {d: q.value for d, q in s.peak_ops.items()},
                     "memory_bandwidth": s.memory_bandwidth.value, "ram": s.ram.value,
                     "storage": s.storage.value if s.storage else None, "power_peak_w": s.power.peak.value,
                     "price": price, "file": t.file})
    return rows
