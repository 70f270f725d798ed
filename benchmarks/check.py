"""`make bench-check`: does docs/benchmarks.md still say what the code does?

1. Reproduction. Each benchmark in REPRODUCIBLE (outputs that do not depend on timing: accuracy,
   sizes, ratios, counts) has a `reproduce()` that reruns it at its documented CI setting and
   returns {"setting": ..., "rows": {row: {column: value}}}, values as the table shows them. The
   rows are compared with the "reproduce" block of its committed results JSON; any difference
   fails, naming the table, the row and the column. Timing benchmarks are never rerun.
2. Provenance. Every `<!-- NAME:start -->` section of docs/benchmarks.md must have its results
   file benchmarks/results/NAME.json with a "provenance" record, and must end with the provenance
   line that record gives, marked **stale** when the code the run used (its script and the effai
   modules it imported, by content) has changed since. `--fix` rewrites those lines.

Run: .venv/bin/python benchmarks/check.py [--only distill,hardware_fit] [--skip-rerun] [--fix]
     .venv/bin/python benchmarks/check.py --backfill NAME   (a results JSON written before provenance)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOC, PROVENANCE, RESULTS, ROOT, _git, content_ids, provenance_line, replace_section  # noqa: E402

from effai.fileio import write_json  # noqa: E402

# results name -> the script whose reproduce() CI reruns (a new deterministic benchmark adds itself here).
# quantize_formats has a reproduce() too, but its 20 + 3 x 6 epochs of LeNet-5 do not fit CI's budget.
REPRODUCIBLE = {
    "hardware_fit": "hardware_fit.py",
    "deep_compression": "deep_compression.py",
    "distill": "distill_fashion.py",
}
SECTION = re.compile(r"<!-- (\S+):start -->\n(.*?)\n<!-- \1:end -->", re.S)


@dataclass(frozen=True)
class Drift:
    """One number of a table that the rerun did not reproduce (or a section whose provenance is off)."""

    table: str
    row: str
    column: str
    committed: object
    rerun: object

    def __str__(self) -> str:
        return (f"{self.table}: row {self.row!r}, column {self.column!r}: committed {self.committed!r}, "
                f"rerun {self.rerun!r}")


def compare(table: str, committed: dict, rerun: dict) -> list[Drift]:
    """Every (row, column) where `rerun` differs from `committed` (both {"setting", "rows"} blocks)."""
    rerun = json.loads(json.dumps(rerun))  # tuples -> lists, as in the committed JSON
    if committed.get("setting") != rerun["setting"]:
        return [Drift(table, "(setting)", "(setting)", committed.get("setting"), rerun["setting"])]
    out = []
    old, new = committed.get("rows", {}), rerun["rows"]
    for row in sorted(set(old) | set(new), key=str):
        if row not in old or row not in new:
            out.append(Drift(table, row, "(row)", "present" if row in old else "absent",
                             "present" if row in new else "absent"))
            continue
        for col in sorted(set(old[row]) | set(new[row]), key=str):
            if old[row].get(col) != new[row].get(col):
                out.append(Drift(table, row, col, old[row].get(col), new[row].get(col)))
    return out


def load_script(script: str):
    spec = importlib.util.spec_from_file_location(f"bench_{Path(script).stem}", ROOT / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


def heading(name: str) -> str:
    """The section's title in docs/benchmarks.md, to name the table in messages."""
    sections = dict(SECTION.findall(DOC.read_text(encoding="utf-8")))
    title = next((line[3:] for line in sections.get(name, "").splitlines() if line.startswith("## ")), "")
    return f"{name} ({title.split(' (`')[0]})" if title else name


def check_reproduction(name: str, results: Path = RESULTS) -> list[Drift]:
    """Rerun benchmark `name` at its CI setting and compare with results/NAME.json's "reproduce" block."""
    committed = json.loads((results / f"{name}.json").read_text()).get("reproduce")
    table = heading(name)
    if committed is None:
        return [Drift(table, "(all)", "(reproduce block)", "absent", f"rerun {REPRODUCIBLE[name]} to record it")]
    return compare(table, committed, load_script(REPRODUCIBLE[name]).reproduce())


def changed_code(prov: dict) -> list[str]:
    """The code files of a run whose content differs now (history is not consulted, so a shallow
    clone in CI gives the same answer)."""
    recorded = prov.get("code") or {}
    now = content_ids(sorted(recorded))
    return sorted(f for f, blob in recorded.items() if now[f] != blob)


def is_stale_line(line: str, prov: dict) -> bool:
    """Does `line` mark its table stale, naming the commit the run was produced on?"""
    return line.startswith(f"{PROVENANCE} **stale**") and f"commit `{prov['commit'][:7]}`" in line


def check_provenance(fix: bool = False) -> list[Drift]:
    """Each section's provenance line against its results JSON; with `fix`, rewrite the lines that differ."""
    problems = []
    for name, body in SECTION.findall(DOC.read_text(encoding="utf-8")):
        path = RESULTS / f"{name}.json"
        if not path.exists():
            problems.append(Drift(name, "(section)", "results file", "absent", f"write {path.relative_to(ROOT)}"))
            continue
        prov = json.loads(path.read_text()).get("provenance")
        if prov is None:
            problems.append(Drift(name, "(section)", "provenance", "absent",
                                  f"rerun the benchmark, or: benchmarks/check.py --backfill {name}"))
            continue
        changed = changed_code(prov)
        want = provenance_line(name, prov, changed)
        lines = body.splitlines()
        have = [i for i, line in enumerate(lines) if line.startswith(PROVENANCE)]
        if have and lines[have[-1]] == want:
            continue
        if fix:
            kept = [line for i, line in enumerate(lines) if i not in have]
            replace_section(name, "\n".join(kept).rstrip() + "\n\n" + want)
        elif not (have and changed and is_stale_line(lines[have[-1]], prov)):  # stale stays stale as more changes
            problems.append(Drift(name, "(section)", "provenance line", lines[have[-1]] if have else "absent", want))
    return problems


def backfill(name: str) -> dict:
    """Provenance for a results JSON written before runs recorded it: the commit that last changed
    the JSON, the code its script imports as it was at that commit, and the machine, threads and
    load if the JSON holds them."""
    path = RESULTS / f"{name}.json"
    data = json.loads(path.read_text())
    commit = _git("log", "-1", "--format=%H", "--", str(path.relative_to(ROOT)))
    script = _script_of(name)
    probe = "\n".join([  # import the script as a module (its main does not run) and list the effai modules it loaded
        "import importlib.util, sys", "sys.path.insert(0, 'benchmarks')",
        f"spec = importlib.util.spec_from_file_location('probe', 'benchmarks/{script}')",
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))",
        "print('\\n'.join(m.__file__ for m in list(sys.modules.values()) if '/src/effai/' in (getattr(m, '__file__', None) or '')))",
    ])
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = sorted({f"benchmarks/{script}", *(Path(f).resolve().relative_to(ROOT).as_posix() for f in out.split())})
    m = data.get("machine", {})
    prov = {"commit": commit, "backfilled": True, "script": f"benchmarks/{script}",
            "started": _git("log", "-1", "--format=%cI", commit)[:19], "machine": m,
            "threads": data.get("threads"), "loadavg_start": data.get("loadavg_start", data.get("loadavg")),
            "loadavg_end": data.get("loadavg_end"), "code": {f: _git("rev-parse", f"{commit}:{f}") for f in files}}
    write_json(path, {**data, "provenance": prov})
    return prov


def _script_of(name: str) -> str:
    """The script that writes results/NAME.json (it names the file in a write_results call)."""
    if name in REPRODUCIBLE:
        return REPRODUCIBLE[name]
    for p in sorted((ROOT / "benchmarks").glob("*.py")):
        if re.search(rf"write_results\(\s*[\"']{re.escape(name)}[\"']", p.read_text()):
            return p.name
    raise SystemExit(f"--backfill {name}: no benchmarks/*.py calls write_results({name!r}, ...)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated results names to rerun (default: all in REPRODUCIBLE)")
    ap.add_argument("--skip-rerun", action="store_true", help="check provenance lines only")
    ap.add_argument("--fix", action="store_true", help="rewrite provenance lines (mark stale tables) instead of failing")
    ap.add_argument("--backfill", metavar="NAME", help="add a provenance record to an old results JSON")
    args = ap.parse_args()
    if args.backfill:
        print(json.dumps(backfill(args.backfill), indent=1)[:2000])
        return 0
    problems = check_provenance(fix=args.fix)
    names = [] if args.skip_rerun else (args.only.split(",") if args.only else list(REPRODUCIBLE))
    for name in names:
        t0, c0 = time.perf_counter(), time.process_time()
        drift = check_reproduction(name)
        print(f"{name}: {'reproduced' if not drift else f'{len(drift)} number(s) moved'} "
              f"({time.perf_counter() - t0:.0f} s, {time.process_time() - c0:.0f} CPU s)", flush=True)
        problems += drift
    for p in problems:
        print("DRIFT " + str(p), file=sys.stderr)
    if any(p.column == "provenance line" for p in problems):
        print("A provenance line is out of date: `make bench-stale` rewrites it (or rerun the benchmark).",
              file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
