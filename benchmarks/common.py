"""Shared plumbing for benchmarks: the machine they ran on and writing results (JSON under
benchmarks/results/, a marked section of docs/benchmarks.md). Side-by-side timing is
`effai.profile.latency.interleaved`.

Each benchmark owns one section of docs/benchmarks.md between `<!-- NAME:start -->` and
`<!-- NAME:end -->` (NAME = its results file, benchmarks/results/NAME.json) and replaces only
that section; the section's last line, `> Provenance: ...`, is written from the JSON's
"provenance" record (commit, machine, threads, load) and rewritten by `benchmarks/check.py`
when the code it ran has changed since. The convention: docs/decisions.md, "Benchmark sections".
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from effai.fileio import write_atomic, write_json  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "benchmarks" / "results"
HEADER = "# Benchmarks\n\nEvery table below is written by a script in `benchmarks/` from its results file.\n"


def machine() -> dict:
    """CPU model, cores, memory and library versions: printed with every result."""
    import torch

    from effai.hardware.host import cpu_model
    from effai.quantize.export import cpu_flags

    cpu = cpu_model()
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


# --- provenance: which code, on which machine, under which load, produced a results file -------------------


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def begin() -> dict:
    """Call at the start of a benchmark: the commit, time and load it starts from, and the content
    of the code as it is now (a file edited while the benchmark runs does not pass for what ran)."""
    files = [p.relative_to(ROOT).as_posix() for d in ("src/effai", "benchmarks") for p in sorted((ROOT / d).rglob("*.py"))]
    return {"commit": _git("rev-parse", "HEAD"), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()], "argv": sys.argv[1:],
            "_code_at_start": content_ids(files)}


def code_files(script: str) -> list[str]:
    """The files whose content decides a benchmark's numbers: its script and every effai module it
    imported (effai imports its subpackages lazily, so this is what the run used). This helper is
    left out: it records and formats, it computes no number."""
    files = {f"benchmarks/{script}"}
    src = ROOT / "src"
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and Path(f).resolve().is_relative_to(src):
            files.add(Path(f).resolve().relative_to(ROOT).as_posix())
    return sorted(files)


def content_ids(files: list[str]) -> dict[str, str]:
    """Git blob ids of the files as they are on disk now ('' for a file that is gone)."""
    present = [f for f in files if (ROOT / f).exists()]
    ids = _git("hash-object", "--", *present).split("\n") if present else []
    out = dict.fromkeys(files, "")
    out.update(zip(present, ids, strict=True))
    return out


def provenance(start: dict, script: str, threads: int | None = None) -> dict:
    """The record every results JSON carries under "provenance": commit the run started on,
    whether its code differed from that commit, machine, torch threads, load, and the content
    ids of the code it ran (what `benchmarks/check.py` compares to decide a table is stale)."""
    import torch

    start = dict(start)
    snapshot = start.pop("_code_at_start")
    files = code_files(script)
    ids = {f: snapshot.get(f, "") for f in files}
    head = dict(zip(files, [_git("rev-parse", f"{start['commit']}:{f}") for f in files], strict=True))
    return {**start, "script": f"benchmarks/{script}", "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "loadavg_end": [round(x, 2) for x in os.getloadavg()], "threads": threads or torch.get_num_threads(),
            "machine": machine(), "uncommitted": sorted(f for f in files if ids[f] != head[f]), "code": ids}


_START = begin()  # a benchmark imports this module first: its run starts here


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
    """Write benchmarks/results/NAME.json and replace the NAME section of docs/benchmarks.md.

    The JSON gets a "provenance" record (unless the script made its own with `provenance`): the
    run started when this module was imported. The section ends with its provenance line."""
    if "provenance" not in data:
        script = Path(getattr(sys.modules["__main__"], "__file__", "unknown")).name
        data = {**data, "provenance": provenance(_START, script)}
    write_json(RESULTS / f"{name}.json", data)
    replace_section(name, markdown.strip() + "\n\n" + provenance_line(name, data["provenance"]))


def replace_section(name: str, markdown: str) -> None:
    """Replace (or append) the NAME section of docs/benchmarks.md, leaving every other section as it is."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else HEADER
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    write_atomic(DOC, text)


PROVENANCE = "> Provenance:"  # the first words of a section's provenance line


def provenance_line(name: str, prov: dict, changed: list[str] | None = None) -> str:
    """The last line of a section: which commit, machine, threads and load produced it; with
    `changed` (code files whose content differs from the run's), it says the table is stale."""
    when = prov.get("started", "")[:16].replace("T", " ")
    m = prov.get("machine") or {}
    where = f"{m.get('cpu', 'an unrecorded CPU')}, {m.get('cores', '?')} cores"
    threads = f"{prov['threads']} torch thread(s)" if prov.get("threads") else "torch threads not recorded"
    if prov.get("loadavg_start") is not None:
        load = f"load {prov['loadavg_start'][0]:.1f} at the start"
        load += f", {prov['loadavg_end'][0]:.1f} at the end" if prov.get("loadavg_end") else ""
    else:
        load = "load not recorded"
    if prov.get("backfilled"):
        what = (f"`{prov['script']}`, last measured on or before commit `{prov['commit'][:7]}` ({when[:10]}: the commit "
                f"that last changed `benchmarks/results/{name}.json`; the run itself recorded no commit)")
    else:
        what = f"`{prov['script']}` on commit `{prov['commit'][:7]}` ({when} UTC)"
        if prov.get("uncommitted"):
            what += " with uncommitted changes to " + ", ".join(f"`{f}`" for f in prov["uncommitted"])
    line = f"{PROVENANCE} {what}; {where}, {threads}, {load}; results `benchmarks/results/{name}.json`."
    if changed:
        shown = sorted(changed)[:5]
        files = ", ".join(f"`{f}`" for f in shown)
        files += f" and {len(changed) - len(shown)} more" if len(changed) > len(shown) else ""
        line = (f"{PROVENANCE} **stale**: {line[len(PROVENANCE) + 1:]} The code it ran has changed since: {files}; "
                f"rerun `{prov['script']}` to refresh this table.")
    return line


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


if __name__ == "__main__":
    print(json.dumps(machine(), indent=2))
