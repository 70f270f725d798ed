"""One parser and one formatter per unit: bytes, seconds, joules and counts.

Every number effai prints about a variant goes through these, so the CLI, the study report,
the search report and the plots show one value the same way (`246.8 KB`, `42.1 µs`, `1.23 µJ`,
`416.5K`).

Sizes use SI prefixes (1 KB = 1000 bytes) as storage vendors and datasheets do; binary
prefixes (KiB, MiB) are read too. `parse_quantity` is the general reader behind the
hardware catalogue's numbers (`4 TOPS`, `68 GB/s`, `0.2 pJ`); the size and duration readers
add what users type on a command line (any letter case, a bare number in bytes or ms).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from effai.errors import InputError

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
           "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12}
# Sizes have no sub-unit prefixes, so their prefix may be written in any case ("250kb", "2kib").
_SIZE_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2.0**10, "mi": 2.0**20, "gi": 2.0**30,
                "ti": 2.0**40}
_UNITS = {  # unit kind -> accepted base-unit spellings
    "ops/s": ("OPS", "FLOPS", "op/s", "ops/s", "MAC/s"),
    "B": ("B",),
    "B/s": ("B/s",),
    "W": ("W",),
    "USD": ("USD", "$"),
    "J": ("J",),
    "Hz": ("Hz",),
    "s": ("s",),
}
_QTY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ$/]*)\s*$")


def parse_quantity(v, unit: str, what: str | None = None) -> float:
    """A number in base units, or a string with a unit of the expected kind; `what` names the
    input in the error (pydantic names the field itself).

    >>> parse_quantity("4 TOPS", "ops/s"), parse_quantity("256 KiB", "B"), parse_quantity(2, "W")
    (4000000000000.0, 262144.0, 2.0)
    >>> parse_quantity("3 W", "J")
    Traceback (most recent call last):
    effai.errors.InputError: unit 'W' is not a J unit (e.g. J with k/M/G/T or Ki/Mi/Gi)
    """
    where = f"{what}={v!r}: " if what else ""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise InputError(f"{where}expected a number or a string with a unit ({unit}), got {type(v).__name__}")
    if isinstance(v, (int, float)):
        return float(v)
    m = _QTY.match(v)
    if not m:
        raise InputError(f"{where}cannot read {v!r} as a quantity in {unit}")
    num, u = float(m.group(1)), m.group(2)
    scale = _scale(u, unit)
    if scale is None:
        raise InputError(f"{where}unit {u!r} is not a {unit} unit "
                         f"(e.g. {', '.join(_UNITS[unit][:2])} with k/M/G/T or Ki/Mi/Gi)")
    return num * scale


def _scale(u: str, unit: str) -> float | None:
    if not u:
        return 1.0
    if unit == "B":
        low = u.lower()
        return _SIZE_PREFIX.get(low[:-1] if low.endswith("b") else low)
    for base in _UNITS[unit]:
        if u.endswith(base) and u[: len(u) - len(base)] in _PREFIX:
            return _PREFIX[u[: len(u) - len(base)]] * (2.0 if base == "MAC/s" else 1.0)
    return None


def parse_bytes(text: str | int | float, what: str = "--max-size") -> int:
    """Bytes in a size string; a bare number is bytes.

    >>> parse_bytes("250KB"), parse_bytes("1.5MB"), parse_bytes("2KiB"), parse_bytes("250kb"), parse_bytes(512)
    (250000, 1500000, 2048, 250000, 512)
    >>> parse_bytes("big")
    Traceback (most recent call last):
    effai.errors.InputError: --max-size='big': expected a size like 250KB, 1.5MB or 2KiB
    """
    value = _positive(text, lambda u: _scale(u, "B"), what, "a size like 250KB, 1.5MB or 2KiB",
                      "B, KB, MB, GB, KiB, MiB or GiB")
    return int(round(value))


def parse_ms(text: str | int | float, what: str = "--max-latency") -> float:
    """Milliseconds in a duration string; a bare number is milliseconds.

    >>> parse_ms("5ms"), parse_ms("800us"), parse_ms("800µs"), parse_ms("0.01s"), parse_ms(2), parse_ms("3")
    (5.0, 0.8, 0.8, 10.0, 2.0, 3.0)
    """
    return _positive(text, lambda u: _MS.get(u.lower()), what, "a duration like 5ms, 800us or 0.01s", "ms, us or s")


_MS = {"": 1.0, "ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3, "ns": 1e-6}  # a bare number is ms


def _positive(text, scale_of: Callable[[str], float | None], what: str, expected: str, units: str) -> float:
    """A positive quantity a user typed, scaled by `scale_of(unit)`."""
    s = str(text) if isinstance(text, (int, float)) and not isinstance(text, bool) else text
    m = _QTY.match(s) if isinstance(s, str) else None
    if m is None or m.group(1).startswith(("-", "+")):
        raise InputError(f"{what}={text!r}: expected {expected}")
    num, u = float(m.group(1)), m.group(2)
    scale = scale_of(u)
    if scale is None:
        raise InputError(f"{what}={text!r}: unknown unit {u!r}; use {units}")
    if not num > 0:
        raise InputError(f"{what}={text!r}: expected a positive value")
    return num * scale


# ------------------------------------------------------------------ formatters
def _si(value: float, unit: str, prefixes: tuple[tuple[str, float], ...], digits: int = 3) -> str:
    """`value` in the largest prefix it reaches, with `digits` significant digits."""
    for prefix, scale in prefixes:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    prefix, scale = prefixes[-1]
    return f"{value / scale:.{digits}g} {prefix}{unit}"


def fmt_bytes(n: float | None) -> str:
    """A size in SI units, one decimal (a byte count below 1 KB as is).

    >>> fmt_bytes(61706 * 4), fmt_bytes(999), fmt_bytes(1.5e6), fmt_bytes(None)
    ('246.8 KB', '999 B', '1.5 MB', '-')
    """
    if n is None:
        return "-"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def fmt_capacity(n: float | None) -> str:
    """A memory capacity (RAM, flash) in binary units, as datasheets and `effai fit` give them;
    up to three significant digits.

    >>> fmt_capacity(524288), fmt_capacity(8 * 2**20), fmt_capacity(40e9), fmt_capacity(512), fmt_capacity(None)
    ('512 KiB', '8 MiB', '37.3 GiB', '512 B', '-')
    """
    if n is None:
        return "-"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def fmt_usd(usd: float | None) -> str:
    """US dollars in plain decimals (never "9.24e-06"): cents for amounts of a cent or more,
    else three significant digits.

    >>> fmt_usd(9.24e-06), fmt_usd(0.0512), fmt_usd(12.3456), fmt_usd(0), fmt_usd(None)
    ('$0.00000924', '$0.05', '$12.35', '$0', '-')
    """
    import math

    if usd is None:
        return "-"
    if usd == 0:
        return "$0"
    if abs(usd) >= 0.01:
        return f"${usd:,.2f}"
    digits = 2 - math.floor(math.log10(abs(usd)))
    return f"${usd:.{digits}f}"


def fmt_ms(ms: float | None) -> str:
    """A duration given in milliseconds, three significant digits, in s, ms, µs or ns.

    >>> fmt_ms(0.0421), fmt_ms(3.14159), fmt_ms(2500), fmt_ms(None)
    ('42.1 µs', '3.14 ms', '2.5 s', '-')
    """
    if ms is None:
        return "-"
    return _si(ms / 1e3, "s", (("", 1.0), ("m", 1e-3), ("µ", 1e-6), ("n", 1e-9)))


def fmt_joules(j: float | None) -> str:
    """An energy in J, mJ, µJ, nJ or pJ, three significant digits.

    >>> fmt_joules(1.234e-6), fmt_joules(0.02), fmt_joules(4.6e-10), fmt_joules(None)
    ('1.23 µJ', '20 mJ', '460 pJ', '-')
    """
    if j is None:
        return "-"
    return _si(j, "J", (("", 1.0), ("m", 1e-3), ("µ", 1e-6), ("n", 1e-9), ("p", 1e-12)))


def fmt_count(n: float | None) -> str:
    """A count (params, MACs) in K, M or G, one decimal.

    >>> fmt_count(416520), fmt_count(2.5e9), fmt_count(12), fmt_count(None)
    ('416.5K', '2.5G', '12', '-')
    """
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{int(n)}"


def fmt_fraction(x: float | None, digits: int = 2) -> str:
    """An accuracy (a fraction) as a percentage.

    >>> fmt_fraction(0.98765), fmt_fraction(0.5, 1), fmt_fraction(None)
    ('98.77%', '50.0%', '-')
    """
    return "-" if x is None else f"{x * 100:.{digits}f}%"
