"""Run several `effai` command lines in one Python process (to pay the import cost once).

Usage: python _batch.py CASES.json RESULTS.json, where CASES.json is a list of argv lists
(without the leading `effai`). Each command runs through `effai.cli.main` exactly as
`python -m effai.cli ARGS` would; an exception escaping `main` is recorded as a traceback.
"""

import contextlib
import io
import json
import sys
import time
import traceback


def run_one(argv: list[str]) -> dict:
    from effai import cli

    err, out = io.StringIO(), io.StringIO()
    sys.argv = ["effai", *argv]
    code = 0
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            cli.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - what a user would see as a traceback
            traceback.print_exc(file=err)
            code = 1
    return {"argv": argv, "exit_code": code, "stderr": err.getvalue(), "stdout": out.getvalue(),
            "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    spec, dest = sys.argv[1], sys.argv[2]  # run_one replaces sys.argv
    cases = json.load(open(spec, encoding="utf-8"))
    results = []
    for a in cases:
        results.append(run_one(a))
    with open(dest, "w", encoding="utf-8") as f:
        json.dump(results, f)
