"""Regenerate docs/img/report.png: run a quick study, open its report.html in headless
Chromium and save a screenshot of its first screen, 1400x900 (the picture at the top of the
README: the recommendation, its reason and its uncertainty, then the variants table).

    .venv/bin/python scripts/screenshot_report.py [--out runs/screenshot] [--png docs/img/report.png]

Uses Debian's chromium (`apt-get install chromium`; `scripts/ensure-chromium.sh`), no network:
the report is a self-contained file and every network feature of the browser is switched off.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def chromium() -> str:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("chromium not found: apt-get install chromium (see scripts/ensure-chromium.sh)")


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 900) -> Path:
    """Save a `width` x `height` screenshot of `html` to `png` with headless Chromium."""
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--hide-scrollbars", f"--screenshot={png}",
               f"--window-size={width},{height}", html.resolve().as_uri()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or not png.exists() or png.stat().st_size == 0:
        sys.exit(f"chromium failed ({r.returncode}): {r.stderr[-1000:]}")
    return png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/screenshot", help="study run folder (relative: the report prints it)")
    ap.add_argument("--png", default=str(ROOT / "docs" / "img" / "report.png"))
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="lenet300_100")
    args = ap.parse_args()

    from effai.study import StudyConfig, run

    result = run(StudyConfig(dataset=args.dataset, model=args.model, quick=True, max_size="60KB",
                             out=args.out), progress=True)
    html = Path(args.out) / "report.html"
    png = screenshot(html, Path(args.png))
    print(f"{png} ({png.stat().st_size} bytes) from {html}; chosen: {result.selection.best}")


if __name__ == "__main__":
    main()
