"""The target catalogue: YAML files validated with pydantic, errors mapped to file:line.

A catalogue file is a YAML mapping from a target name to its entry. Every number is written
as `{value: ..., source: "..."}` so the source of each figure travels with it; a value is a
plain number in base units (ops/s, bytes, bytes/s, W, USD, J) or a string with a unit
(`"4 TOPS"`, `"256 KiB"`, `"68 GB/s"`, `"2 W"`, `"0.2 pJ"`). Peak ops count one MAC as two ops.

    coral_edgetpu:
      title: Coral Edge TPU (USB Accelerator)
      kind: npu
      dtypes: [int8]
      peak_ops: {int8: {value: 4 TOPS, source: "coral.ai datasheet"}}
      ...

Malformed files raise `InputError` naming the file, the line and the field
(`edge.yaml:12: coral_edgetpu.peak_ops.int8.value: ...`); duplicate keys are errors too.

>>> cat = load_catalogue()
>>> cat["nano33ble"].ram.value, "int8" in cat["coral_edgetpu"].dtypes
(262144.0, True)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from effai.config import node_line, parse_yaml
from effai.errors import InputError, suggest
from effai.registry import Registry
from effai.results.units import parse_quantity

DTYPES = ("fp32", "fp16", "bf16", "fp8", "int8", "int4")
Dtype = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]
BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 4}
_DTYPE_ALIASES = {
    "float32": "fp32", "float": "fp32", "f32": "fp32", "float16": "fp16", "half": "fp16", "f16": "fp16",
    "bfloat16": "bf16", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "float8": "fp8", "qint8": "int8",
    "quint8": "int8", "uint8": "int8", "i8": "int8", "int4": "int4", "qint4": "int4", "uint4": "int4",
}


def normalise_dtype(dtype: str, what: str = "dtype") -> str:
    """The catalogue name of a dtype (`float32` -> `fp32`, `qint8` -> `int8`).

    >>> normalise_dtype("float32"), normalise_dtype("INT8")
    ('fp32', 'int8')
    """
    if not isinstance(dtype, str):
        raise InputError(f"{what}: expected a string such as 'int8' or 'fp32', got {dtype!r}")
    d = dtype.strip().lower().replace("torch.", "")
    d = _DTYPE_ALIASES.get(d, d)
    if d not in DTYPES:
        raise suggest(dtype, DTYPES, what)
    return d


# ------------------------------------------------------------------ quantities with units
# One reader for every unit effai parses (effai.results.units); an InputError is a ValueError,
# so pydantic reports a bad quantity with its field and line.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantity(_Strict):
    """One number with its source (datasheet, paper, measurement or labelled estimate)."""

    unit: ClassVar[str] = ""
    value: float = Field(ge=0)
    source: str = Field(min_length=3)

    @field_validator("value", mode="before")
    @classmethod
    def _units(cls, v):
        return parse_quantity(v, cls.unit)


class OpsPerSecond(Quantity):
    unit: ClassVar[str] = "ops/s"


class Bytes(Quantity):
    unit: ClassVar[str] = "B"


class BytesPerSecond(Quantity):
    unit: ClassVar[str] = "B/s"


class Watts(Quantity):
    unit: ClassVar[str] = "W"


class Dollars(Quantity):
    unit: ClassVar[str] = "USD"


class Joules(Quantity):
    unit: ClassVar[str] = "J"


class Hertz(Quantity):
    unit: ClassVar[str] = "Hz"


class McuCore(_Strict):
    """A microcontroller's CPU core and clock: what `effai deploy` compiles for and times at."""

    core: Literal["cortex-m4", "cortex-m7", "cortex-m55"]
    clock: Hertz


class Power(_Strict):
    """Board or chip power while idle and at full load."""

    idle: Watts
    peak: Watts


class Price(_Strict):
    """Rental price per hour (cloud) or purchase price per unit (device); at least one."""

    per_hour: Dollars | None = None
    per_unit: Dollars | None = None

    @model_validator(mode="after")
    def _one(self):
        if self.per_hour is None and self.per_unit is None:
            raise ValueError("give per_hour or per_unit")
        return self


class Efficiency(_Strict):
    """Fractions of peak a typical CNN layer reaches: `compute` (of peak ops), `memory` (of
    bandwidth), and optional per-kernel multipliers on `compute` (`depthwise`, `conv`, `linear`)."""

    compute: float = Field(gt=0, le=1)
    memory: float = Field(gt=0, le=1)
    kernels: dict[Literal["depthwise", "conv", "linear", "pool", "other"], float] = Field(default_factory=dict)
    per_layer_s: float = Field(default=0.0, ge=0, description="fixed overhead per layer call, seconds")
    kernel_overhead_s: dict[Literal["depthwise", "conv", "linear", "pool", "other"], float] = Field(default_factory=dict)
    source: str = Field(min_length=3)


class Runtime(_Strict):
    """The inference runtime assumed on the target and what it costs by itself."""

    name: str
    arena_overhead: Bytes | None = None  # RAM the runtime needs besides activations
    code_size: Bytes | None = None  # flash/storage for the runtime and its kernels


class TargetSpec(_Strict):
    """One catalogue entry (see the module docstring for the YAML shape)."""

    title: str
    kind: Literal["cpu", "gpu", "tpu", "npu", "sbc", "mcu", "neuromorphic", "photonic"]
    status: Literal["product", "research_estimate"] = "product"
    aliases: list[str] = Field(default_factory=list)
    dtypes: list[Dtype] = Field(min_length=1)
    peak_ops: dict[Dtype, OpsPerSecond]
    memory_bandwidth: BytesPerSecond
    ram: Bytes
    storage: Bytes | None = None
    weights_in: Literal["ram", "storage"] = "ram"
    power: Power
    energy_per_op: dict[Dtype, Joules] = Field(default_factory=dict)
    price: Price | None = None
    efficiency: Efficiency
    runtime: Runtime | None = None
    mcu: McuCore | None = None  # microcontrollers effai can build firmware for
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self):
        missing = [d for d in self.dtypes if d not in self.peak_ops]
        if missing:
            raise ValueError(f"peak_ops has no entry for supported dtype(s) {missing}")
        if self.weights_in == "storage" and self.storage is None:
            raise ValueError("weights_in is 'storage' but no storage is given")
        if self.price is None and self.status != "research_estimate":
            raise ValueError("price is required for products (per_hour or per_unit)")
        return self


@dataclass(frozen=True)
class Target:
    """A validated catalogue entry with its name and the file it came from."""

    name: str
    spec: TargetSpec
    file: str
    calibration: dict | None = None  # the host's micro-benchmark results

    def __getattr__(self, item):  # target.ram, target.dtypes, ... read through to the spec
        if item.startswith("__"):
            raise AttributeError(item)
        return getattr(self.spec, item)

    def peak(self, dtype: str) -> float:
        """Peak ops/s at `dtype`."""
        return self.spec.peak_ops[normalise_dtype(dtype)].value  # type: ignore[index]  # normalised: one of DTYPES

    def to_dict(self) -> dict:
        return {"name": self.name, "file": self.file, **self.spec.model_dump(mode="json")}


# Targets measured on this machine rather than read from a file ("host": effai.hardware.host
# registers its calibration here), built on first use. Registered from below, so this module
# never imports the modules that measure.
MEASURED: Registry[str, Callable[[], Target]] = Registry("measured target")


@dataclass
class Catalogue:
    """Targets by name (aliases resolve too); measured ones (`host`) are built on first use."""

    targets: dict[str, Target] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return sorted(set(self.targets) | set(MEASURED))

    def __contains__(self, name) -> bool:
        try:
            self._key(name)
            return True
        except InputError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _key(self, name: str) -> str:
        if not isinstance(name, str):
            raise InputError(f"target: expected a target name, got {type(name).__name__}")
        key = name.strip().lower().replace("-", "_").replace(" ", "_")
        if key in self.targets or key in MEASURED:
            return key
        for n, t in self.targets.items():
            if key in (a.lower().replace("-", "_") for a in t.spec.aliases):
                return n
        raise suggest(name, self.names() + [a for t in self.targets.values() for a in t.spec.aliases], "target")

    def __getitem__(self, name: str) -> Target:
        key = self._key(name)
        if key not in self.targets:
            self.targets[key] = MEASURED[key]()
        return self.targets[key]

    def get(self, name: str) -> Target:
        """The target called `name` (or one of its aliases); unknown names suggest close ones."""
        return self[name]

    def canonical(self, name: str) -> str:
        """The catalogue name of `name` (an alias such as "jetson" -> "jetson_orin_nano"), so
        that what a command prints and records names the device it used.

        >>> load_catalogue().canonical("jetson"), load_catalogue().canonical("nano33ble")
        ('jetson_orin_nano', 'nano33ble')
        """
        return self._key(name)



def _clean_loc(loc: tuple) -> tuple:
    # pydantic adds union-branch and validator names ("Dollars", "function-after[...]") to locs
    return tuple(p for p in loc if not (isinstance(p, str) and (p[:1].isupper() or "[" in p)))


def parse_catalogue(text: str, file: str) -> dict[str, Target]:
    """Parse and validate one catalogue file's text; errors name `file`, the line and the field."""
    data, node = parse_yaml(text, file)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{file}:1: expected a mapping of target names to entries, got {type(data).__name__}")
    out = {}
    for name, entry in data.items():
        line = node_line(node, (name,))
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise InputError(f"{file}:{line}: target name {name!r}: use lowercase letters, digits and _")
        if name in MEASURED:
            raise InputError(f"{file}:{line}: {name!r} is reserved for a target measured on this machine")
        try:
            spec = TargetSpec.model_validate(entry)
        except ValidationError as e:
            err = e.errors()[0]
            loc = (name, *_clean_loc(err["loc"]))
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field (not in the catalogue schema)"
            elif err["type"] == "missing":
                msg = "field required"
            more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
            raise InputError(f"{file}:{node_line(node, loc)}: {'.'.join(map(str, loc))}: {msg}{more}") from None
        out[name] = Target(name=name, spec=spec, file=file)
    return out


def builtin_files() -> list:
    """The catalogue YAML files shipped in the package."""
    root = resources.files("effai.hardware") / "catalogue"
    return sorted((p for p in root.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name)


def load_catalogue(extra=None, builtin: bool = True) -> Catalogue:
    """Load the built-in catalogue plus the user's files in `extra` (a path or a list of paths).

    A user's entry with the same name as a built-in one replaces it; the same name twice within
    the built-in files is an error.

    >>> cat = load_catalogue()
    >>> {"t4", "a100", "h100", "tpu_v4", "coral_edgetpu", "nano33ble", "stm32f746", "loihi2"} <= set(cat.names())
    True
    """
    if extra is None:
        extra = []
    elif isinstance(extra, (str, Path)):
        extra = [extra]
    cat = Catalogue()
    if builtin:
        for res in builtin_files():
            parsed = parse_catalogue(res.read_text(encoding="utf-8"), res.name)
            clash = set(parsed) & set(cat.targets)
            if clash:
                raise InputError(f"{res.name}: target {sorted(clash)[0]!r} is already defined in another built-in file")
            cat.targets.update(parsed)
            cat.files.append(res.name)
    for p in extra:
        path = Path(p)
        if not path.is_file():
            raise InputError(f"catalogue: {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"catalogue: {path}: cannot read ({e})") from None
        cat.targets.update(parse_catalogue(text, str(path)))
        cat.files.append(str(path))
    return cat
