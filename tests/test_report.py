"""effai.report: HTML escaping, content of every section, Markdown/JSON, and the HTML
opened in headless Chromium (no console errors, SVG plots in the DOM, a non-blank page)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from effai import report
from effai.evaluate import compare
from effai.results import (
    AXES,
    BaseModelInfo,
    Constraints,
    Cost,
    DatasetInfo,
    Energy,
    Environment,
    Evaluation,
    Latency,
    StudyResult,
    TargetFit,
    VariantRecord,
    pareto_front,
    select,
)

EVIL = "<script>alert(1)</script>"
CHROMIUM = "/usr/bin/chromium"


def synthetic_result() -> StudyResult:
    """A small hand-made study result: 5 variants and a failed one, 3 classes (one named like an attack)."""
    classes = ["zero", EVIL, "two & <b>three</b>"]
    labels = [i % 3 for i in range(60)]

    def ev(acc_per_class, robust):
        preds = [t if (i // 3) < acc_per_class[t] * 20 else (t + 1) % 3 for i, t in enumerate(labels)]
        acc = sum(p == t for p, t in zip(preds, labels, strict=True)) / 60
        return Evaluation(n=60, accuracy=acc, topk={"top5": 1.0}, per_class=acc_per_class, confusion=[], ece=0.02,
                          class_names=classes, predictions=preds, labels=labels,
                          robustness={"gaussian_noise": [acc - 0.05 * s * robust for s in (1, 3, 5)],
                                      "blur": [acc - 0.03 * s * robust for s in (1, 3, 5)]},
                          severities=[1, 3, 5])

    specs = [  # name, family, per-class accuracy, size, macs, latency, energy
        ("fp32", "baseline", [1.0, 1.0, 0.95], 260_000, 416_520, 0.30, 2e-6),
        ("magnitude_50", "pruning", [1.0, 0.9, 0.9], 120_000, 416_520, 0.30, 2e-6),
        ("int8_ptq", "quantization", [1.0, 0.95, 0.95], 64_000, 416_520, 0.20, 1e-6),
        (f"int4 {EVIL}", "quantization", [1.0, 0.0, 0.95], 34_000, 416_520, 0.40, 9e-7),
        ("mobilenet_v2", "architecture", [0.9, 0.9, 0.9], 900_000, 2_000_000, 2.0, 8e-6),
    ]
    variants = []
    base_ev = None
    for name, fam, pc, size, macs, lat, ej in specs:
        e = ev(pc, 1 if fam != "architecture" else 0.5)
        base_ev = base_ev or e
        cost = Cost(size_bytes=size, size_format="int8 + fp32 scales", params=61_706, macs=macs,
                    latency=Latency(lat, runtime="torch", threads=1, how="torch eager, 1 thread"),
                    energy=Energy(ej, "estimated", "Horowitz 45 nm"))
        fit = TargetFit(fits=size < 250_000, reason=f"{size} B vs 1 MB flash", latency_ms=lat * 100,
                        cost_usd_per_million=0.01, co2_g_per_million=0.5)
        variants.append(VariantRecord(name, family=fam, description=f"{name} description", accuracy=e.accuracy,
                                      cost=cost, evaluation=e, harm=compare(base_ev, e) if name != "fp32" else None,
                                      targets={"nano33ble": fit}))
    variants.append(VariantRecord.failed("binary", "ValueError: boom", family="quantization"))
    c = Constraints(max_size_bytes=250_000, max_latency_ms=5.0)
    return StudyResult(
        name="synthetic", base=BaseModelInfo("lenet5", arch="lenet5", source="trained", epochs=3, test_accuracy=0.98),
        dataset=DatasetInfo("mnist5k", tuple(classes), 60),
        variants=tuple(variants), constraints=c, selection=select(variants, c),
        pareto={axis: tuple(r.name for r in pareto_front(variants, [axis])) for axis in AXES},
        command="effai study --dataset mnist5k --max-size 250KB --out runs/x",
        config={"dataset": "mnist5k", "model": EVIL}, environment=Environment(torch="2.13.0"),
        notes=(f"note with {EVIL}",),
    )


@pytest.fixture(scope="module")
def html_path(tmp_path_factory):
    return report.write_html(synthetic_result(), tmp_path_factory.mktemp("report") / "report.html")


def test_html_escapes_everything_user_supplied(html_path):
    html = html_path.read_text()
    # The only <script> is our sorting script; the evil names appear as text.
    assert html.count("<script>") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>three</b>" not in html and "two &amp; &lt;b&gt;three&lt;/b&gt;" in html
    # Nothing is fetched: no external scripts, styles, images or fonts.
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//|url\((https?:)?//|@import', html)


def test_html_has_every_section(html_path):
    html = html_path.read_text()
    for anchor in ("recommendation", "variants-table", "pareto-size", "pareto-latency", "harm-heatmap",
                   "robustness", "fit-matrix", "cost-table", "command", "config"):
        assert f'id="{anchor}"' in html, anchor
    assert "Use int8_ptq" in html  # the selection
    assert "infeasible" in html and "dominated" in html and "failed" in html
    assert "⚑" in html  # the int4 variant's broken class is flagged
    assert html.count("<svg") >= 5  # 4 Pareto plots + robustness
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate element ids across inlined SVGs"


def test_markdown_and_json(tmp_path):
    res = synthetic_result()
    md = report.write_markdown(res, tmp_path / "report.md").read_text()
    assert "**Selected: int8_ptq**" in md and "&lt;script&gt;" in md and "<script>" not in md
    assert "| binary | failed |" in md
    path = report.write_json(res, tmp_path / "report.json")
    assert json.loads(path.read_text())["selection"]["best"] == "int8_ptq"
    assert StudyResult.load(path) == res


def test_html_in_headless_chromium(html_path, tmp_path):
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is missing: run `bash scripts/ensure-chromium.sh` (as root) to install Debian's chromium")
    from PIL import Image

    shot = tmp_path / "shot.png"
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    url = html_path.resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    shot_run = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,2400", url],
                              capture_output=True, text=True, timeout=90)
    # Chromium logs every console message as ":CONSOLE"; our page logs nothing, so any is an error.
    errors = [ln for ln in (dom.stderr + shot_run.stderr).splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    assert not errors, errors
    assert dom.stdout.count("<svg") >= 5, "plots were not rendered into the DOM"
    assert "alert(1)" in dom.stdout and "<script>alert(1)" not in dom.stdout
    img = Image.open(shot).convert("L")
    lo, hi = img.getextrema()
    assert hi > lo, "the screenshot is blank"


# Runs in the page after load: per SVG axes, the tick label texts; every point label's box.
_PROBE = """<script>
window.addEventListener('load', function () {
  var out = {axes: [], labels: []};
  document.querySelectorAll('svg g[id*="axes_"]').forEach(function (g) {
    if (!/axes_\\d+$/.test(g.id)) return;
    var tick = function (k) {
      return Array.from(g.querySelectorAll('g[id*="' + k + 'tick_"] text')).map(function (t) {
        return t.textContent.trim(); }).filter(function (s) { return s; }); };
    out.axes.push({id: g.id, x: tick('x'), y: tick('y')});
  });
  document.querySelectorAll('svg g[id*="ptlabel-"]').forEach(function (g) {
    var r = g.getBoundingClientRect();
    out.labels.push({id: g.id, svg: g.closest('svg').parentNode.id, l: r.left, t: r.top, r: r.right, b: r.bottom});
  });
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _probe(html_path: Path, tmp_path: Path, script: str = _PROBE) -> dict:
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is missing: run `bash scripts/ensure-chromium.sh` (as root) to install Debian's chromium")
    page = tmp_path / "probe.html"
    page.write_text(html_path.read_text().replace("</body>", script + "</body>"))
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                          "--window-size=1400,900", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=90)
    import html as html_lib

    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert m, "the probe script did not run"
    return json.loads(html_lib.unescape(m.group(1)))


def _units(labels) -> set[str]:
    """The unit part of printed quantities ('260.0 KB' -> 'KB', '416.5K' -> 'K', '95%' -> '%')."""
    return {re.sub(r"^[-+\d.e]+\s*", "", s.replace("−", "-")) for s in labels}


def test_plots_read_in_ten_seconds(html_path, tmp_path):
    probe = _probe(html_path, tmp_path)
    assert len(probe["axes"]) >= 4 + 2  # 4 Pareto plots + 2 robustness panels
    for ax in probe["axes"]:
        assert len(ax["x"]) >= 3 and len(ax["y"]) >= 3, ax
    # No two point labels of one plot overlap (boxes as Chromium lays them out).
    by_svg: dict[str, list[dict]] = {}
    for b in probe["labels"]:
        by_svg.setdefault(b["svg"], []).append(b)
    assert len(by_svg) == 4 and all(len(v) == 5 for v in by_svg.values()), by_svg.keys()
    for boxes in by_svg.values():
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                overlap = a["l"] < b["r"] and b["l"] < a["r"] and a["t"] < b["b"] and b["t"] < a["b"]
                assert not overlap, (a, b)
    # Units on each Pareto x axis are units the table prints in that column.
    html = html_path.read_text()
    res = synthetic_result()
    from effai.results import fmt_bytes, fmt_count, fmt_joules, fmt_ms

    column = {"size": {fmt_bytes(r.size_bytes) for r in res.variants if r.ok},
              "macs": {fmt_count(r.macs) for r in res.variants if r.ok},
              "latency": {fmt_ms(r.latency_ms) for r in res.variants if r.ok},
              "energy": {fmt_joules(r.energy_j) for r in res.variants if r.ok}}
    for axis, printed in column.items():
        ax = next(a for a in probe["axes"] if a["id"].startswith(f"p{axis}-"))
        assert _units(ax["x"]) <= _units(printed), (axis, ax["x"], printed)
        assert all(s in html for s in printed)  # the table prints those very strings
        assert _units(ax["y"]) == {"%"}


def test_confusion_matrices(html_path):
    html = html_path.read_text()
    assert 'id="confusion"' in html and 'id="slice-note"' not in html  # no slices in this study
    opened = re.findall(r"<details open class=\"confusion\"><summary>([^<]*)</summary>", html)
    assert opened == ["fp32 (base)", "int8_ptq (selected)"]
    assert html.count('class="confusion-matrix"') == 5
    # fp32's matrix: 60 test images, diagonal = right answers (class 2 recall 0.95 -> 19 of 20).
    first = html[html.index('class="confusion-matrix"'):]
    first = first[:first.index("</table>")]
    counts = [int(c) for c in re.findall(r'class="heat"[^>]*>(\d+)</td>', first)]
    assert len(counts) == 9 and sum(counts) == 60 and counts[0] + counts[4] + counts[8] == 59


# The boxes (in CSS pixels of a 1400x900 window) of the recommendation, its reason and its uncertainty.
_FIRST_SCREEN = """<script>
window.addEventListener('load', function () {
  var out = {height: window.innerHeight, width: window.innerWidth};
  ['use', 'reason', 'uncertainty'].forEach(function (id) {
    var e = document.getElementById(id), r = e.getBoundingClientRect();
    out[id] = {text: e.textContent.trim(), top: r.top, bottom: r.bottom, right: r.right};
  });
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def test_first_screen_holds_the_recommendation_its_reason_and_its_uncertainty(tmp_path):
    """At 1400x900 in headless Chromium, without scrolling: "Use X", why, and how sure (the
    accuracy interval and the variants it is statistically tied with)."""
    from effai.study.runner import with_statistics

    res = synthetic_result()
    recs = with_statistics(list(res.variants), res.constraints)
    res = res.replace(variants=tuple(recs), selection=select(recs, res.constraints),
                      notes=res.notes + tuple(f"a long note number {i} " * 8 for i in range(6)))
    tied = [v.name for v in res.selection.rejected if v.kind == "tie"]
    assert res.selection.best and tied  # the synthetic study has a statistical tie to state
    page = report.write_html(res, tmp_path / "report.html")
    probe = _probe(page, tmp_path, _FIRST_SCREEN)
    # The window is 1400x900; headless Chromium's viewport inside it is shorter (~757 px): the stricter bound.
    screen = min(900, probe["height"])
    assert probe["width"] == 1400 and screen > 600, probe
    for part in ("use", "reason", "uncertainty"):
        box = probe[part]
        assert box["text"] and 0 <= box["top"] < box["bottom"] <= screen and box["right"] <= 1400, (part, box)
    assert probe["use"]["text"] == f"Use {res.selection.best}"
    assert probe["reason"]["text"] == res.selection.reason
    best = res.variant(res.selection.best)
    assert best.accuracy_ci.describe() in probe["uncertainty"]["text"]
    assert all(name in probe["uncertainty"]["text"] for name in tied), probe["uncertainty"]


def test_cost_table_prints_dollars_without_exponents(tmp_path):
    res = synthetic_result()
    tiny = res.variants[0].targets["nano33ble"].replace(cost_usd_per_million=9.24e-06)
    res = res.replace(variants=(res.variants[0].replace(targets={"nano33ble": tiny}), *res.variants[1:]))
    html = report.write_html(res, tmp_path / "report.html").read_text()
    table = html[html.index('id="cost-table"'):].split("</table>")[0]
    assert "$0.00000924 ·" in table and "$0.01 ·" in table and "e-0" not in table, table
