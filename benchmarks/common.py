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
            "date": time.strftime("%Y-%m-%d")}


def machine_line(m: dict | None = None) -> str:
    m = m or machine()
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; torch {m['torch']}"
            + (f", onnxruntime {m['onnxruntime']}" if "onnxruntime" in m else "") + f"; {m['date']}.")


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


def load_avg() -> float:
    """The 1-minute load average (the machine is shared: record it with every timing)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def git_commit() -> str:
    """Short hash of the checked-out commit (with "+dirty" when the tree has changes)."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


if __name__ == "__main__":
    print(json.dumps(machine(), indent=2))
