"""The report writer with hostile names: any string in a model, layer, variant or class name renders
as text in the HTML report (no tag, no attribute, no script of its own)."""

from __future__ import annotations

import importlib.util
from html.parser import HTMLParser
from pathlib import Path

from hostile_corpus import ScriptNamed
from hostile_util import record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effai import report

EVIL = "<script>alert(1)</script>"


def _base_result():
    spec = importlib.util.spec_from_file_location("_effai_report_fixture", Path(__file__).parents[1] / "test_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.synthetic_result()


BASE = _base_result()


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.handlers, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.handlers += [k for k, _ in attrs if k.startswith("on")]

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    return p


def _with_names(model: str, layer: str, classes: list[str], variant: str):
    r = BASE
    variants = [v.replace(description=f"largest activation at layer {layer}",
                          evaluation=v.evaluation and v.evaluation.replace(class_names=classes))
                for v in r.variants]
    variants[2] = variants[2].replace(name=variant)
    return r.replace(base=r.base.replace(name=model), config={**r.config, "model": model},
                     dataset=r.dataset.replace(class_names=tuple(classes)), variants=tuple(variants),
                     notes=(f"layer {layer}",))


def _render(result: dict) -> str:
    from effai.report.html import render_html

    return render_html(result)


_BASE_TAGS: list = []


def _base() -> _Tags:
    """The element structure of the same report with plain names (rendered once)."""
    if not _BASE_TAGS:
        _BASE_TAGS.append(_parse(_render(_with_names("m", "l", ["a", "b", "c"], "v"))))
    return _BASE_TAGS[0]


def test_report_from_a_model_named_script(tmp_path):
    """A real model whose layer name is <script>…: profiled, then reported with <script> class names."""
    from effai import profile

    p = profile(ScriptNamed(), input_shape=(1, 4), latency=False)
    layer = p.layers[0].name
    assert EVIL in layer
    path = report.write_html(_with_names(f"net {EVIL}", layer, ["ok", EVIL, "<img src=x onerror=alert(1)>"],
                                         f"v {EVIL}"), tmp_path / "report.html")
    html = path.read_text()
    base = _base()
    got = _parse(html)
    assert got.tags.count("script") == base.tags.count("script")
    assert "img" not in got.tags and not got.handlers
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and EVIL in "".join(got.text)
    md = report.render_markdown(_with_names(f"net {EVIL}", layer, ["ok", EVIL, "x"], "v")) \
        if hasattr(report, "render_markdown") else None
    record("model, layer and class names containing <script> → effai.report.write_html", "write_html(result)", "ok",
           outcome=f"{html.count('&lt;script&gt;')} escaped occurrences, no injected tag or handler"
           + (", Markdown rendered" if md is not None else ""))


_name = st.text(alphabet=st.sampled_from(list("<>&\"'/= scriptonerrimg()`;{}\\é\u202e\x00")), min_size=1, max_size=30)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=_name, layer=_name, classes=st.lists(_name, min_size=3, max_size=3, unique=True), variant=_name)
def test_any_names_render_as_text(model, layer, classes, variant):
    html = _render(_with_names(model, layer, classes, variant))
    base = _base()
    got = _parse(html)
    assert sorted(got.tags) == sorted(base.tags), "a name added or removed an HTML element"
    assert got.handlers == base.handlers


def test_property_run_is_recorded():
    record("any model/layer/variant/class names (hypothesis, 8 reports per run)", "report.render_html(result)", "ok",
           outcome="same element structure as a report with plain names: names render as text")
