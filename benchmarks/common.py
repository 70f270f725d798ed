"""Shared plumbing for benchmarks: the machine they ran on and writing results (JSON under
benchmarks/results/, a marked section of docs/benchmarks.md). Side-by-side timing is
`effai.profile.latency.interleaved`.

Each benchmark owns one section of docs/benchmarks.md between
`<!-- NAME:start -->` and `<!-- NAME:end -->` and replaces only that section.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from effai.fileio import write_atomic, write_json  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "benchmarks" / "results"
HEADER = "# Benchmarks\n\nEvery number below was measured by a script in `benchmarks/`; each section names the machine it ran on.\n"


def machine() -> dict:
    """CPU model, cores, memory and library versions: printed with every result."""
    import torch

    from effai.quantize.export import cpu_flags

    cpu = platform.processor() or "unknown"
    try:
        m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    flags = sorted(x for x in cpu_flags() if x.startswith(("avx", "amx", "vnni", "fma")))
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("onnxruntime", "onnx", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "simd": flags, **versions,
            "date": time.strftime("%Y-%m-%d"), "load": load(), "commit": commit()}


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages: how contended the machine was while timing."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def commit() -> str:
    """The git commit measured (with '+changes' when the work tree differs from it)."""
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}{'+changes' if dirty else ''}" if sha else "unknown"


def machine_line(m: dict | None = None) -> str:
    m = m or machine()
    extra = ""
    if m.get("load"):
        extra += f" Load average when done {' / '.join(f'{v:.1f}' for v in m['load'])} on {m['cores']} cores."
    if m.get("commit"):
        extra += f" Commit {m['commit']}."
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; torch {m['torch']}"
            + (f", onnxruntime {m['onnxruntime']}" if "onnxruntime" in m else "") + f"; {m['date']}." + extra)


def write_results(name: str, data: dict, markdown: str) -> None:
    """Write benchmarks/results/NAME.json and replace the NAME section of docs/benchmarks.md."""
    write_json(RESULTS / f"{name}.json", data)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else HEADER
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    write_atomic(DOC, text)


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


if __name__ == "__main__":
    print(json.dumps(machine(), indent=2))
