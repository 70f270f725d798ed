"""Issue 21's small items that live in the CLI's output: target tables at 80 columns, aliases
said out loud, dollars without exponents, paths in --json."""

import json
import os
import subprocess
import sys

EFFAI = [sys.executable, "-m", "effai.cli"]


def effai(*args, columns: int | None = None):
    env = {**os.environ, **({"COLUMNS": str(columns)} if columns else {})}
    return subprocess.run([*EFFAI, *args], capture_output=True, text=True, timeout=300, env=env)


def test_targets_at_80_columns_keep_names_whole_and_capacities_in_binary_units():
    names = [t["name"] for t in json.loads(effai("targets", "--json").stdout)]
    r = effai("targets", columns=80)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in r.stdout, r.stdout
    first_words = {ln.split()[0] for ln in lines if ln.strip()}
    assert set(names) <= first_words, set(names) - first_words  # each name whole, on its own row
    assert "kB" not in r.stdout and " KB" not in r.stdout and "KiB" in r.stdout


def test_a_target_alias_is_named_and_recorded_as_its_device():
    from effai.study import StudyConfig

    assert StudyConfig(target="jetson").target == "jetson_orin_nano"
    r = effai("fit", "lenet5", "--target", "jetson", "--json")
    assert r.returncode in (0, 1), r.stderr
    assert "note: target 'jetson' is jetson_orin_nano (an alias)" in r.stderr
    assert json.loads(r.stdout)["fit"]["target"] == "jetson_orin_nano"


def test_train_json_names_the_checkpoint_and_last_pt(tmp_path):
    r = effai("train", "lenet300_100", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "ck"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["checkpoint"] == str(tmp_path / "ck") and (tmp_path / "ck" / "model.json").is_file()
    assert out["last"] == str(tmp_path / "ck" / "last.pt") and (tmp_path / "ck" / "last.pt").is_file()
    help_text = effai("train", "--help", columns=120).stdout
    assert "last.pt" in help_text
