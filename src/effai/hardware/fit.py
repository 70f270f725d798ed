"""Does a profiled model fit a target? dtype support, RAM and flash/storage, each with its margin.

- dtype: the target must run the model's dtype (the Edge TPU runs int8 only, so a float model
  is refused);
- RAM: peak activations (at the target dtype) plus the runtime's arena overhead (e.g. TFLite
  Micro's interpreter and scratch buffers), plus the weights when they live in RAM;
- storage: the weights at the target dtype (params x bits / 8, plus per-channel scales and
  int32 biases for integer dtypes) plus the runtime's code, when weights live in flash/storage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from effai.errors import InputError
from effai.hardware.accounting import activation_scale, check_profile, resolve_dtype, weight_bytes_for


@dataclass(frozen=True)
class Check:
    """One constraint: what the model needs, what the target has, the margin, pass or fail."""

    name: str
    required: float
    available: float
    passed: bool
    detail: str = ""

    @property
    def margin(self) -> float:
        """available - required (bytes for memory checks)."""
        return self.available - self.required

    @property
    def margin_pct(self) -> float | None:
        return 100.0 * self.margin / self.available if self.available else None

    def to_dict(self) -> dict:
        return {**asdict(self), "margin": self.margin, "margin_pct": self.margin_pct}


@dataclass(frozen=True)
class FitReport:
    """The verdict of `fit`: `fits` is True when every check passed."""

    model: str
    target: str
    title: str
    dtype: str
    checks: list[Check] = field(default_factory=list)
    status: str = "product"

    @property
    def fits(self) -> bool:
        return all(c.passed for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def verdict(self) -> str:
        """One line: fits, or what does not fit and by how much."""
        if self.fits:
            tight = min((c for c in self.checks if c.name != "dtype"), key=lambda c: c.margin_pct or 0, default=None)
            extra = f"; tightest: {tight.name} {_kb(tight.required)} of {_kb(tight.available)}" if tight else ""
            return f"{self.model} fits {self.target} at {self.dtype}{extra}"
        why = "; ".join(c.detail for c in self.failed())
        return f"{self.model} does not fit {self.target} at {self.dtype}: {why}"

    def to_dict(self) -> dict:
        return {"model": self.model, "target": self.target, "title": self.title, "dtype": self.dtype,
                "status": self.status, "fits": self.fits, "verdict": self.verdict(),
                "checks": [c.to_dict() for c in self.checks]}


def _kb(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.2f} MiB"
    return f"{n / 2**10:.1f} KiB"


def fit(profile, target, dtype: str | None = None, runtime_arena_bytes: int | None = None,
        catalogue=None) -> FitReport:
    """Check whether a profiled model fits `target` (a name or a `Target`) at `dtype`.

    `dtype=None` uses the profile's own dtype (fp32 for a float model).
    `runtime_arena_bytes` overrides the target's runtime arena overhead (RAM besides activations).

    >>> import torch, effai
    >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 30 * 30, 2))
    >>> p = effai.profile(m, input_shape=(1, 3, 32, 32), latency=False)
    >>> fit(p, "nano33ble", dtype="int8").fits, fit(p, "edgetpu").fits
    (True, False)
    >>> fit(p, "edgetpu").failed()[0].detail
    'dtype fp32 is not supported by coral_edgetpu (supports int8); quantize first or pass dtype=...'
    """
    check_profile(profile)
    t = _target(target, catalogue)
    dt = resolve_dtype(profile, dtype)
    if runtime_arena_bytes is not None and (not isinstance(runtime_arena_bytes, int) or runtime_arena_bytes < 0):
        raise InputError(f"runtime_arena_bytes: expected a non-negative integer, got {runtime_arena_bytes!r}")
    spec = t.spec
    checks = []
    ok = dt in spec.dtypes
    checks.append(Check("dtype", 0, 0, ok, "" if ok else
                        f"dtype {dt} is not supported by {t.name} (supports {', '.join(spec.dtypes)}); "
                        "quantize first or pass dtype=..."))

    act = profile.total.peak_activation_bytes * activation_scale(profile, dt)
    weights = weight_bytes_for(profile, dt)
    rt = spec.runtime
    arena = runtime_arena_bytes if runtime_arena_bytes is not None else (
        rt.arena_overhead.value if rt and rt.arena_overhead else 0)
    code = rt.code_size.value if rt and rt.code_size else 0
    ram_need = act + arena + (weights if spec.weights_in == "ram" else 0)
    parts = f"activations {_kb(act)} + runtime arena {_kb(arena)}" + (
        f" + weights {_kb(weights)}" if spec.weights_in == "ram" else "")
    ram_ok = ram_need <= spec.ram.value
    checks.append(Check("ram", ram_need, spec.ram.value, ram_ok,
                        f"RAM needs {_kb(ram_need)} ({parts}), has {_kb(spec.ram.value)}"
                        + ("" if ram_ok else f", over by {_kb(ram_need - spec.ram.value)}")))
    if spec.weights_in == "storage":
        need = weights + code
        ok = need <= spec.storage.value
        checks.append(Check("storage", need, spec.storage.value, ok,
                            f"storage needs {_kb(need)} (weights {_kb(weights)} + runtime code {_kb(code)}), "
                            f"has {_kb(spec.storage.value)}" + ("" if ok else f", over by {_kb(need - spec.storage.value)}")))
    return FitReport(model=getattr(profile, "model", "model"), target=t.name, title=spec.title, dtype=dt,
                     checks=checks, status=spec.status)


def _target(target, catalogue):
    from effai.hardware.catalogue import Target, load_catalogue

    if isinstance(target, Target):
        return target
    cat = catalogue if catalogue is not None else _default_catalogue()
    if not isinstance(target, str):
        raise InputError(f"target: expected a target name such as 'nano33ble' or a Target, got {type(target).__name__}")
    return cat[target] if cat is not None else load_catalogue()[target]


_CACHE: dict = {}


def _default_catalogue():
    from effai.hardware.catalogue import load_catalogue

    if "cat" not in _CACHE:
        _CACHE["cat"] = load_catalogue()
    return _CACHE["cat"]
