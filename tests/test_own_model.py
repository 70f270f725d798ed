"""The user's own model from a .py file: `--model file.py:ClassName --model-args JSON --trust-code`.

Loading a .py file runs it, so without --trust-code nothing in it may run; every failure of
the user's code ends in one line (exit 2), and a study of such a model reproduces from its
report's command.
"""

import json
import shlex
import subprocess
import sys
import textwrap

import pytest
import torch

from effai.errors import InputError
from effai.zoo import usercode

EFFAI = [sys.executable, "-m", "effai.cli"]

TINY_CNN = textwrap.dedent('''
    import torch.nn as nn


    class TinyCNN(nn.Module):
        """A small CNN for 8x8 digits; `width` is its own argument, the class count is the zoo's."""

        input_shape = (1, 8, 8)

        def __init__(self, num_classes=10, in_channels=1, width=8):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.classifier = nn.Linear(2 * width, num_classes)

        def forward(self, x):
            return self.classifier(self.features(x))
''')


@pytest.fixture
def mynet(tmp_path):
    (tmp_path / "mynet.py").write_text(TINY_CNN)
    return tmp_path / "mynet.py"


def effai(*args, cwd=None):
    return subprocess.run([*EFFAI, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    """Run `effai ARGS` in this process: (exit code, stderr)."""
    from effai import cli as cli_mod

    monkeypatch.setattr(sys, "argv", ["effai", *args])
    code = 0
    try:
        cli_mod.main()
    except SystemExit as e:
        code = e.code or 0
    return code, capsys.readouterr().err


def test_a_py_model_never_runs_without_trust_code(tmp_path, monkeypatch, capsys):
    """Every command that takes a model refuses a .py file without --trust-code, before running it."""
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nimport torch.nn as nn\nNet = nn.Linear\n")
    spec = f"{tmp_path / 'evil.py'}:Net"
    commands = [
        ["profile", spec, "--no-latency"],
        ["fit", spec, "--target", "nano33ble"],
        ["export", spec, "--dataset", "digits", "--out", str(tmp_path / "m.onnx")],
        ["train", spec, "--dataset", "digits", "--out", str(tmp_path / "t")],
        ["study", "--dataset", "digits", "--quick", "--model", spec, "--out", str(tmp_path / "s")],
        ["deploy", spec, "--target", "nano33ble", "--input", "1x4", "--out", str(tmp_path / "d")],
        ["profile", str(tmp_path / "sd.pt"), "--arch", spec],
    ]
    torch.save({"weight": torch.zeros(2, 4)}, tmp_path / "sd.pt")
    for args in commands:
        code, err = cli(monkeypatch, capsys, *args)
        assert code == 2, (args, err)
        assert err.strip().count("\n") == 0 and "--trust-code" in err, (args, err)
    assert not marker.exists()
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()


@pytest.mark.parametrize("source, expected", [
    ("x = (\n", "running the file failed: line 1: SyntaxError: '(' was never closed"),
    ("import no_such_module_here\n", "running the file failed: line 1: ModuleNotFoundError: No module named"),
    ("import sys\nsys.exit(3)\n", "running the file failed: line 2: SystemExit: 3"),
    ("import torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
     "        raise RuntimeError('boom')\n", "Net() failed: line 5: RuntimeError: boom"),
    ("def Net():\n    return 3\n", "Net returned int, expected a torch.nn.Module"),
    ("class Net:\n    pass\n", "Net is a class but not a torch.nn.Module"),
    ("import torch.nn as nn\nclass Other(nn.Module):\n    pass\n", "defines no 'Net'; nn.Module classes in it: Other"),
])
def test_errors_in_the_users_file_are_one_line(tmp_path, monkeypatch, capsys, source, expected):
    (tmp_path / "m.py").write_text(source)
    code, err = cli(monkeypatch, capsys, "profile", f"{tmp_path / 'm.py'}:Net", "--trust-code", "--input", "1x4",
                    "--no-latency")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert expected in err and "Traceback" not in err, err


def test_model_args_and_zoo_options_reach_the_class(mynet):
    m = usercode.build(f"{mynet}:TinyCNN", {"width": 4}, trust_code=True, num_classes=3, width_mult=0.5)
    assert m.classifier.out_features == 3 and m.features[0].out_channels == 4  # width_mult: not a TinyCNN argument
    assert m.effai_code == {"spec": f"{mynet.resolve()}:TinyCNN", "args": {"num_classes": 3, "width": 4}}
    with pytest.raises(InputError, match=r"TinyCNN\(num_classes=3, widht=4\) failed: TypeError"):
        usercode.build(f"{mynet}:TinyCNN", {"widht": 4}, trust_code=True, num_classes=3)
    with pytest.raises(InputError, match="--model-args: not valid JSON"):
        usercode.parse_model_args("{width: 4}")


def test_state_dict_with_a_py_arch_and_a_checkpoint_of_a_py_model(mynet, tmp_path, digits):
    """--arch file.py:ClassName loads a bare state dict; a checkpoint of a .py model rebuilds it
    from the file by its absolute path (from any folder), and only with the trust flag."""
    from effai.train import load_checkpoint, save_checkpoint
    from effai.zoo.loading import load_for_data

    spec = f"{mynet}:TinyCNN"
    net = usercode.build(spec, {"width": 4}, trust_code=True)
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    lm = load_for_data(str(tmp_path / "sd.pt"), digits, arch=spec, trust_pickle=True, model_args={"width": 4})
    assert torch.equal(lm.model.features[0].weight, net.features[0].weight)
    save_checkpoint(net, tmp_path / "ckpt", data=digits)
    with pytest.raises(InputError, match="TinyCNN is Python code"):
        load_checkpoint(tmp_path / "ckpt")
    again, meta = load_checkpoint(tmp_path / "ckpt", trust_pickle=True)
    assert meta["code"] and meta["arch"] == f"{mynet.resolve()}:TinyCNN" and meta["options"] == {"width": 4}
    assert torch.equal(again.classifier.weight, net.classifier.weight)


def test_a_zoo_name_registered_in_python_reproduces_from_the_cli(tmp_path):
    """A study of an architecture registered in Python writes a command a fresh process can run:
    the builder's file, with --trust-code."""
    (tmp_path / "myzoo.py").write_text(textwrap.dedent('''
        import torch.nn as nn
        from effai.zoo import ModelInfo, register


        @register("user_mlp", ModelInfo("user_mlp", "user", (1, 8, 8), 10, "ours"))
        def build(*, num_classes, in_channels, width_mult, resolution):
            return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * resolution * resolution, num_classes))
    '''))
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import myzoo; "
              "from effai.study.config import StudyConfig; from effai.study.runner import _command; "
              "print(_command(StudyConfig(dataset='digits', model='user_mlp', quick=True, epochs=1)))")
    cmd = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert f"--model {tmp_path.resolve() / 'myzoo.py'}:build" in cmd and "--trust-code" in cmd, cmd
    args = shlex.split(cmd)
    model = args[args.index("--model") + 1]
    r = effai("profile", model, "--trust-code", "--input", "1x1x8x8", "--no-latency", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total"]["params"] == 64 * 10 + 10


def test_search_over_a_py_family(mynet, tmp_path):
    from effai.search import SearchConfig, run

    space = {"family": [f"{mynet}:TinyCNN"], "width_mult": [1.0], "prune_ratio": [0.0], "bits": [8]}
    train = {"epochs": 1, "finetune_epochs": 1}
    with pytest.raises(InputError, match="Python code"):
        run(SearchConfig(n_trials=1, out=str(tmp_path / "a"), space=space, train=train))
    with pytest.raises(InputError, match="takes no width_mult"):
        run(SearchConfig(n_trials=1, out=str(tmp_path / "b"), trust_code=True, train=train,
                         space={**space, "width_mult": [0.5, 1.0]}))
    with pytest.raises(InputError, match="per_layer_bits needs a zoo family"):
        run(SearchConfig(n_trials=1, out=str(tmp_path / "d"), trust_code=True, train=train,
                         space={**space, "per_layer_bits": True}))
    result = run(SearchConfig(n_trials=1, out=str(tmp_path / "c"), space=space, train=train, trust_code=True,
                              model_args={"width": 4}), write=False)
    assert len(result.trials) == 1 and result.trials[0].record.cost.params == 4 * 9 + 4 + 8 + 8 * 4 * 9 + 8 + 8 * 10 + 10


@pytest.mark.slow
def test_own_cnn_through_profile_study_export_and_the_reproduce_command(mynet, tmp_path):
    """The done-when of issue 21: a CNN in the user's .py file goes through profile, study and
    export from the CLI with --trust-code, and the report's reproduce command reruns the study."""
    spec = "mynet.py:TinyCNN"
    w = 6
    r = effai("profile", spec, "--trust-code", "--model-args", f'{{"width": {w}}}', "--no-latency", "--json",
              cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    prof = json.loads(r.stdout)
    assert prof["input_shape"] == [1, 1, 8, 8]
    assert prof["total"]["params"] == (9 * w + w) + 2 * w + (w * 2 * w * 9 + 2 * w) + (2 * w * 10 + 10)

    study = ["study", "--dataset", "digits", "--quick", "--epochs", "10", "--model", spec, "--trust-code",
             "--model-args", f'{{"width": {w}}}', "--variants", "fp32,int8_ptq", "--out", "run", "--json"]
    r = effai(*study, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / json.loads(r.stdout)["report"]).is_file()  # study --json names its report
    first = json.loads((tmp_path / "run" / "result.json").read_text())
    accuracies = {v["name"]: v["accuracy"] for v in first["variants"]}
    assert set(accuracies) == {"fp32", "int8_ptq"} and all(a > 0.6 for a in accuracies.values()), accuracies
    report = (tmp_path / "run" / "report.html").read_text()
    assert "mynet.py:TinyCNN" in report and "--trust-code" in first["command"]

    r = effai("export", "run/base", "--dataset", "digits", "--dtype", "int8", "--out", "m.onnx", "--json", cwd=tmp_path)
    assert r.returncode == 2 and "--trust-code" in r.stderr  # the checkpoint is rebuilt from the .py file
    r = effai("export", "run/base", "--trust-code", "--dataset", "digits", "--dtype", "int8", "--out", "m.onnx",
              "--min-agreement", "0.95", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["bytes"] == (tmp_path / "m.onnx").stat().st_size > 0

    (tmp_path / "run").rename(tmp_path / "first")  # the reproduce command, run as written, in a fresh folder
    args = shlex.split(first["command"])
    assert args[0] == "effai"
    r = effai(*args[1:], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "run" / "result.json").read_text())
    assert {v["name"]: v["accuracy"] for v in again["variants"]} == accuracies


def test_a_trusted_whole_pickle_whose_module_is_missing_is_one_line(tmp_path, monkeypatch, capsys):
    """A model pickled with torch.save(model) in another project: with --trust-pickle its class's
    module must import here; when it does not, one line says what to do (not a 70-line traceback)."""
    pkg = tmp_path / "elsewhere" / "models_pkg_21"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("import torch.nn as nn\n\n\nclass Net(nn.Linear):\n    pass\n")
    script = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import models_pkg_21; "
              "torch.save(models_pkg_21.Net(4, 2), sys.argv[2])")
    subprocess.run([sys.executable, "-c", script, str(pkg.parent), str(tmp_path / "whole.pt")], check=True, timeout=120)
    code, err = cli(monkeypatch, capsys, "profile", str(tmp_path / "whole.pt"), "--trust-pickle", "--input", "1x4",
                    "--no-latency")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert "No module named 'models_pkg_21'" in err and "--arch path/to/file.py:ClassName --trust-code" in err
