"""The CLI contract: --help with an example everywhere, exit 2 with one line for bad input."""

import subprocess
import sys

import pytest
import typer.main

from effai.cli import app

EFFAI = [sys.executable, "-m", "effai.cli"]


def run(*args, **kw):
    return subprocess.run([*EFFAI, *args], capture_output=True, text=True, timeout=300, **kw)


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_every_command_has_an_example_in_its_help():
    root = typer.main.get_command(app)
    cmds = list(_commands(root))
    assert len(cmds) >= 2
    for path, cmd in cmds:
        assert "Example" in (cmd.help or ""), f"`effai {' '.join(path)}` --help has no example"


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and "effai" in r.stdout
    r = run("--help")
    assert r.returncode == 0 and "Example" in r.stdout


def test_unknown_model_one_line_exit_2():
    r = run("train", "resnet19", "--out", "/tmp/effai-never")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'resnet19'" in lines[0] and "resnet18" in lines[0]
    assert "Traceback" not in r.stderr


def test_bad_option_value_exit_2():
    r = run("train", "lenet5", "--epochs", "0", "--out", "/tmp/effai-never")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_zoo_list_json():
    import json

    r = run("zoo", "list", "--json")
    assert r.returncode == 0
    names = [m["name"] for m in json.loads(r.stdout)]
    assert "mobilenet_v2" in names and "lenet5" in names


def test_wrong_input_shape_says_expected_and_got():
    from effai import zoo
    from effai.errors import InputError

    with pytest.raises(InputError, match=r"expected input \(C,H,W\)=\(3,224,224\) but got \(1,28,28\)"):
        zoo.check_input("mobilenet_v2", (1, 1, 28, 28))


def test_train_cli_writes_checkpoint(tmp_path):
    import json

    r = run("train", "lenet300_100", "--dataset", "digits", "--epochs", "2", "--out", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["test_accuracy"] > 0.5
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["arch"] == "lenet300_100" and meta["input_shape"] == [1, 8, 8]
