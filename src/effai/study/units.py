"""Parse and print the sizes and durations users type: `250KB`, `1.5MB`, `5ms`, `800us`.

Sizes use SI units (1 KB = 1000 bytes) as storage vendors and datasheets do; binary units
(KiB, MiB) are accepted too. A bare number is bytes for sizes and milliseconds for latency.
"""

from __future__ import annotations

import re

from effai.errors import InputError

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "k": 1e3, "m": 1e6}
_TIME_UNITS = {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3, "ns": 1e-6}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zµ]*)\s*$", re.IGNORECASE)


def parse_size(text: str | int | float, what: str = "--max-size") -> int:
    """Bytes in a size string.

    >>> parse_size("250KB"), parse_size("1.5MB"), parse_size("2KiB"), parse_size(512)
    (250000, 1500000, 2048, 512)
    >>> parse_size("big")
    Traceback (most recent call last):
    effai.errors.InputError: --max-size='big': expected a size like 250KB, 1.5MB or 2KiB
    """
    value, unit = _split(text, what, "a size like 250KB, 1.5MB or 2KiB")
    if unit not in _SIZE_UNITS:
        raise InputError(f"{what}={text!r}: unknown unit {unit!r}; use B, KB, MB, GB, KiB, MiB or GiB")
    return int(round(value * _SIZE_UNITS[unit]))


def parse_latency(text: str | int | float, what: str = "--max-latency") -> float:
    """Milliseconds in a duration string.

    >>> parse_latency("5ms"), parse_latency("800us"), parse_latency("0.01s"), parse_latency(2)
    (5.0, 0.8, 10.0, 2.0)
    """
    value, unit = _split(text, what, "a duration like 5ms, 800us or 0.01s")
    if unit not in _TIME_UNITS:
        raise InputError(f"{what}={text!r}: unknown unit {unit!r}; use ms, us or s")
    return value * _TIME_UNITS[unit]


def _split(text, what: str, expected: str) -> tuple[float, str]:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = _NUMBER.match(str(text))
        if not m:
            raise InputError(f"{what}={text!r}: expected {expected}")
        value, unit = float(m.group(1)), m.group(2).lower()
    if not value > 0:
        raise InputError(f"{what}={text!r}: expected a positive value")
    return value, unit


def fmt_bytes(n: float | None) -> str:
    """A short human size (SI units).

    >>> fmt_bytes(61706 * 4), fmt_bytes(999), fmt_bytes(None)
    ('246.8 KB', '999 B', '-')
    """
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def fmt_ms(ms: float | None) -> str:
    """A short human latency.

    >>> fmt_ms(0.0421), fmt_ms(3.14159), fmt_ms(None)
    ('42.1 us', '3.14 ms', '-')
    """
    if ms is None:
        return "-"
    return f"{ms * 1e3:.1f} us" if ms < 1 else f"{ms:.3g} ms"


def fmt_count(n: float | None) -> str:
    """A short human count.

    >>> fmt_count(416520), fmt_count(2.5e9), fmt_count(12)
    ('416.5K', '2.5G', '12')
    """
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{int(n)}"
