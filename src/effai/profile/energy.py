"""Energy per inference: measured where the machine has counters, estimated otherwise.

Measured: Intel RAPL package counters (`/sys/class/powercap/intel-rapl:*/energy_uj`) around
the latency loop on CPU, or NVML total energy on NVIDIA GPUs. These count the whole package
or board (idle power and other processes included), divided by the calls timed.

Estimated: an op-level model with Horowitz's 45 nm numbers ("Computing's energy problem",
ISSCC 2014): per add / multiply at the weights' precision, per SRAM access of activations,
per DRAM access of weights. It is a rough lower-bound style estimate, labelled as such.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

# pJ per operation, Horowitz ISSCC 2014, 45 nm, 0.9 V.
HOROWITZ_45NM = {
    "int8": {"add": 0.03, "mul": 0.2},
    "int16": {"add": 0.05, "mul": 0.6},  # mul interpolated between int8 and int32
    "int32": {"add": 0.1, "mul": 3.1},
    "fp16": {"add": 0.4, "mul": 1.1},
    "fp32": {"add": 0.9, "mul": 3.7},
}
SRAM_PJ_PER_64BIT = 20.0  # 32 KB cache read
DRAM_PJ_PER_64BIT = 1950.0  # middle of Horowitz's 1.3-2.6 nJ
RAPL_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class Energy:
    """Joules per inference (one call at the profiled batch size), how they were obtained."""

    joules: float
    method: str  # "measured" | "estimated"
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def precision_for(bits: float | None, floating: bool = True) -> str:
    """The Horowitz table row for a bit-width.

    >>> precision_for(None), precision_for(8), precision_for(16), precision_for(4)
    ('fp32', 'int8', 'fp16', 'int8')
    """
    if bits is None or bits > 16:
        return "fp32"
    if bits > 8:
        return "fp16" if floating else "int16"
    return "int8"


def estimate(macs: int, elementwise_flops: int, weight_bytes: int, activation_bytes: int,
             precision: str = "fp32") -> Energy:
    """Estimate energy from counts with the Horowitz 45 nm model.

    compute = MACs x (mul + add) + elementwise FLOPs x add; weights read once from DRAM;
    every activation byte written once and read once from a 32 KB SRAM.

    >>> e = estimate(macs=1_000_000, elementwise_flops=0, weight_bytes=0, activation_bytes=0)
    >>> round(e.joules * 1e6, 2), e.method    # 1e6 x 4.6 pJ = 4.6 uJ
    (4.6, 'estimated')
    """
    if precision not in HOROWITZ_45NM:
        raise ValueError(f"precision: expected one of {sorted(HOROWITZ_45NM)}, got {precision!r}")
    c = HOROWITZ_45NM[precision]
    compute = macs * (c["mul"] + c["add"]) + elementwise_flops * c["add"]
    dram = weight_bytes / 8 * DRAM_PJ_PER_64BIT
    sram = 2 * activation_bytes / 8 * SRAM_PJ_PER_64BIT
    joules = (compute + dram + sram) * 1e-12
    detail = (f"estimated with Horowitz ISSCC 2014 45 nm energies at {precision}: "
              f"{c['mul']} pJ/mul + {c['add']} pJ/add per MAC, {c['add']} pJ per elementwise FLOP, "
              f"weights read once from DRAM ({DRAM_PJ_PER_64BIT:g} pJ/64 bit), activations written and read "
              f"once from 32 KB SRAM ({SRAM_PJ_PER_64BIT:g} pJ/64 bit); compute {compute * 1e-12:.3g} J, "
              f"DRAM {dram * 1e-12:.3g} J, SRAM {sram * 1e-12:.3g} J")
    return Energy(joules=joules, method="estimated", detail=detail)


def rapl_files() -> list[Path]:
    """Readable RAPL package energy counters (empty where the machine has none)."""
    if not RAPL_ROOT.exists():
        return []
    out = []
    for d in sorted(RAPL_ROOT.glob("intel-rapl:*")):
        f = d / "energy_uj"
        if ":" in d.name and d.name.count(":") == 1 and f.exists():
            try:
                int(f.read_text())
                out.append(f)
            except (OSError, ValueError):
                continue
    return out


class Meter:
    """Reads a hardware energy counter around a block: `with Meter(device) as m: ...; m.joules`.

    `m.available` is False where there is no counter (then `joules` stays None).
    """

    def __init__(self, device_type: str = "cpu"):
        self.device_type = device_type
        self.files = rapl_files() if device_type == "cpu" else []
        self._nvml = None
        if device_type == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml.nvmlDeviceGetHandleByIndex(0)
                self._pynvml = pynvml
            except Exception:  # noqa: BLE001 - no NVML: estimate instead
                self._nvml = None
        self.available = bool(self.files) or self._nvml is not None
        self.joules: float | None = None
        self.source = "RAPL " + ", ".join(str(f) for f in self.files) if self.files else "NVML total energy"

    def _read(self) -> float:
        if self.files:
            return sum(int(f.read_text()) for f in self.files) * 1e-6
        return self._pynvml.nvmlDeviceGetTotalEnergyConsumption(self._nvml) * 1e-3

    def __enter__(self):
        if self.available:
            self._start = self._read()
        return self

    def __exit__(self, *exc):
        if self.available:
            delta = self._read() - self._start
            self.joules = delta if delta >= 0 else None  # counter wrapped: no reading
        return False
