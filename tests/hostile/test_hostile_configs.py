"""Hostile configs: compress recipes, search configs and hardware catalogues. Every error is one
line naming the file, the line and the field; parsers are fuzzed with hypothesis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hostile_util import record, run_and_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effai.errors import InputError

GOOD_TARGET = """\
my_board:
  title: My board
  kind: mcu
  dtypes: [int8]
  peak_ops:
    int8: {value: 1 GOPS, source: "datasheet"}
  memory_bandwidth: {value: 1 GB/s, source: "datasheet"}
  ram: {value: 256 KiB, source: "datasheet"}
  storage: {value: 1 MiB, source: "datasheet"}
  weights_in: storage
  power:
    idle: {value: 5 uW, source: "datasheet"}
    peak: {value: 15 mW, source: "datasheet"}
  price:
    per_unit: {value: 40 USD, source: "store"}
  efficiency: {compute: 0.5, memory: 0.5, per_layer_s: 0.0, source: "estimate"}
  runtime: {name: TFLite Micro}
"""

# (what, file name, text, words the error must name besides the file: line first)
RECIPES = [
    ("malformed YAML", "recipe.yaml", "sparsity: [0.5\nfc_bits: 5\n", ":2", "yaml syntax error"),
    ("duplicate key", "recipe.yaml", "sparsity: 0.5\nfc_bits: 5\nsparsity: 0.9\n", ":3", "duplicate key 'sparsity'"),
    ("unknown key", "recipe.yaml", "sparsity: 0.5\nfc_bitz: 5\n", ":2", "fc_bitz", "unknown key"),
    ("wrong type", "recipe.yaml", "dataset: digits\nfc_bits: five\n", ":2", "fc_bits", "'five'"),
    ("value out of range", "recipe.yaml", "dataset: digits\n\nsparsity: 1.5\n", ":3", "sparsity", "1.5"),
]
SEARCHES = [
    ("malformed YAML", "search.yaml", "n_trials: 3\nspace: {family: [lenet5\n", ":3", "yaml syntax error"),
    ("duplicate key", "search.yaml", "n_trials: 3\nn_trials: 4\n", ":2", "duplicate key 'n_trials'"),
    ("unknown key", "search.yaml", "n_trials: 3\nspace:\n  widht_mult: [0.5]\n", ":3", "space.widht_mult", "unknown key"),
    ("wrong type", "search.yaml", "n_trials: 3\ntrain:\n  epochs: lots\n", ":3", "train.epochs", "'lots'"),
    ("value out of range", "search.yaml", "space:\n  prune_ratio: [0.1, 1.5]\n", ":2", "space.prune_ratio", "[0, 1)"),
]
CATALOGUES = [
    ("malformed YAML", "boards.yaml", GOOD_TARGET + "  notes: [unclosed\n", ":19", "yaml"),
    ("duplicate key", "boards.yaml", GOOD_TARGET.replace("  kind: mcu\n", "  kind: mcu\n  kind: npu\n"), ":4",
     "duplicate key 'kind'"),
    ("unknown key", "boards.yaml", GOOD_TARGET + "  colour: blue\n", ":18", "my_board.colour"),
    ("wrong type", "boards.yaml", GOOD_TARGET.replace("value: 256 KiB", "value: lots"), ":8", "my_board.ram"),
    ("value out of range", "boards.yaml", GOOD_TARGET.replace("value: 1 GB/s", "value: -5"), ":7",
     "my_board.memory_bandwidth"),
]


def test_config_files_via_cli(tmp_path):
    cases, expect = {}, {}
    for kind, rows in (("recipe", RECIPES), ("search config", SEARCHES), ("hardware catalogue", CATALOGUES)):
        for what, fname, text, *words in rows:
            d = tmp_path / f"{kind.replace(' ', '_')}_{what.replace(' ', '_')}"
            d.mkdir()
            p = d / fname
            p.write_text(text)
            name = f"{kind}: {what}"
            if kind == "recipe":
                cases[name] = ["compress", "lenet5", "--recipe", p, "--out", d / "out"]
            elif kind == "search config":
                cases[name] = ["search", "--config", p, "--out", d / "out"]
            else:
                cases[name] = ["targets", "--catalogue", p]
            line, *rest = words
            expect[name] = (2, f"{fname}{line}", *rest)
    run_and_record(cases, tmp_path, expect)
    assert not any((tmp_path / d / "out").exists() for d in tmp_path.iterdir() if d.is_dir())


# ---------------------------------------------------------------- property-based: the parsers
def _loaders():
    from effai.compress.recipe import load_recipe
    from effai.hardware.catalogue import load_catalogue
    from effai.search import load_config

    return {"recipe.yaml": load_recipe, "search.yaml": load_config,
            "boards.yaml": lambda p: load_catalogue(extra=[p], builtin=False)}


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12))
_keys = st.sampled_from(["dataset", "sparsity", "fc_bits", "n_trials", "space", "train", "family", "bits",
                         "prune_ratio", "epochs", "objectives", "my_board", "title", "kind", "ram", "value",
                         "source", "peak_ops", "int8", "dtypes", "x", "<script>", "é"])
_tree = st.recursive(_scalar, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(_keys, c, max_size=4)),
                     max_leaves=12)
_LOC = re.compile(r"^(?P<file>\S+?\.yaml)(:(?P<line>\d+))?: ")


def _check(p: Path, fn) -> str:
    try:
        fn(p)
        return "ok"
    except InputError as e:
        msg = str(e)
        if "catalogue: " in msg[:11]:
            msg = msg[len("catalogue: "):]
        assert "\n" not in msg, msg
        assert str(p) in msg, msg
        return "rejected"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_keys, _tree, max_size=5), which=st.sampled_from(["recipe.yaml", "search.yaml",
                                                                            "boards.yaml"]))
def test_parsers_accept_or_reject_with_file_and_line(tmp_path, doc, which):
    """Any YAML document: the parser returns a config or raises one InputError naming the file
    (with a line when the problem is in the document) -- never another exception."""
    p = tmp_path / which
    p.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _check(p, _loaders()[which])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"%@` \n\t#,?0.5")), max_size=60),
       which=st.sampled_from(["recipe.yaml", "search.yaml", "boards.yaml"]))
def test_parsers_survive_arbitrary_text(tmp_path, text, which):
    """Arbitrary (mostly malformed) YAML text: never a traceback, always file-named errors."""
    p = tmp_path / which
    p.write_text(text)
    _check(p, _loaders()[which])


def test_property_runs_are_recorded():
    record("config parsers fuzzed (hypothesis, 80 YAML documents x 3 parsers)", "load_recipe / search.load_config / "
           "load_catalogue", "InputError or ok", outcome="every rejection one line naming the file")


def test_non_utf8_config(tmp_path):
    from effai.compress.recipe import load_recipe

    p = tmp_path / "recipe.yaml"
    p.write_bytes(b"dataset: \xff\xfe\n")
    with pytest.raises(InputError) as e:
        load_recipe(p)
    record("recipe that is not UTF-8 text → load_recipe", "load_recipe('recipe.yaml')", "InputError",
           outcome=str(e.value))
    assert "recipe.yaml" in str(e.value)
