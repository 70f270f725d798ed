"""Round two of hostile input (issue 20), one test per class of fault, each fixed at its root:
code in model files (the loader), writes to odd targets (the writer), memory declared by tiny
files (the readers' size checks), parsers and validators, and two runs on one folder."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from hostile_corpus import (
    checkpoint_folder,
    idx_folder,
    idx_raw,
    lenet5_state,
    npz,
    npz_lying_header,
    npz_zip_bomb,
    onnx_custom_op_in_if,
    onnx_huge_input,
    onnx_no_nodes,
    pt_zip_bomb,
    torchscript_file,
    whole_module_pt,
)
from hostile_util import ENV, HERE, cli_batch, cmd_text, record, run_and_record

from effai.errors import InputError

AS_LIMIT = 2 << 30  # address-space cap of the memory cases; a normal `effai profile` needs 0.75-1 GiB (torch maps ~0.8)


def test_code_in_model_files(tmp_path):
    ts, whole = torchscript_file(tmp_path), whole_module_pt(tmp_path)
    cases = {
        "TorchScript file (a program) without --trust-code → profile": ["profile", ts, "--no-latency"],
        "TorchScript file with --trust-code → profile": ["profile", ts, "--trust-code", "--no-latency"],
        "whole pickled nn.Module → profile": ["profile", whole, "--no-latency"],
    }
    expect = {
        "TorchScript file (a program) without --trust-code → profile": (2, "scripted.pt", "program", "--trust-code"),
        "TorchScript file with --trust-code → profile": (2, "input shape is unknown", "--input"),
        "whole pickled nn.Module → profile": (2, "whole_model.pt", "effai.zoo.lenet.LeNet5", "state_dict()", "--arch",
                                              "--trust-pickle"),
    }
    res = run_and_record(cases, tmp_path, expect)
    assert "add_safe_globals" not in res["whole pickled nn.Module → profile"]["stderr"]


def _batch_under_limit(cases: dict, tmp_path, limit: int = AS_LIMIT) -> dict:
    """cli_batch in a child whose address space is capped at `limit` bytes (prlimit/RLIMIT_AS)."""
    import resource

    spec, res = tmp_path / "_mcases.json", tmp_path / "_mresults.json"
    names = list(cases)
    spec.write_text(json.dumps([[str(a) for a in cases[n]] for n in names]))
    p = subprocess.run([sys.executable, str(HERE / "_batch.py"), str(spec), str(res)], capture_output=True, text=True,
                       env=ENV, timeout=600, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(zip(names, json.loads(res.read_text()), strict=True))


def test_memory_declared_by_tiny_files(tmp_path):
    """Each file declares gigabytes to terabytes; each is refused before allocating, under a 2 GiB
    address-space limit that a normal profile run fits in."""
    t = tmp_path
    big = np.array([0, 1] * 20 + [10**12])
    x = np.zeros((41, 8, 8), np.float32)
    wrap = idx_raw(0x08, [1 << 16, 1 << 16, 1 << 16, 1 << 16], b"")  # 2^64 elements: int64 product wraps to 0
    lab32 = idx_raw(0x0C, [40], np.array([0, 1] * 19 + [0, 10**9], ">i4").tobytes())
    imgs = idx_raw(0x08, [40, 8, 8], bytes(40 * 64))
    cases = {  # the normal run first: it pays the imports, so each refusal's time is its own
        "a normal run under the same limit": ["profile", "lenet5", "--no-latency"],
        "label 10^12 in an .npz (10^12 class names)": ["train", "lenet5", "--dataset", npz(t, "big_label.npz", x, big),
                                                       "--epochs", "1", "--out", t / "o1"],
        "label 10^9 in an IDX file": ["train", "lenet5", "--dataset", idx_folder(t, "idx_big_label", gzip.compress(imgs),
                                      gzip.compress(lab32)), "--epochs", "1", "--out", t / "o2"],
        "1 GiB .npz zip bomb (1 MB file)": ["train", "lenet5", "--dataset", npz_zip_bomb(t), "--epochs", "1",
                                            "--out", t / "o3"],
        ".npz header declaring 10^12 floats in 16 bytes": ["train", "lenet5", "--dataset", npz_lying_header(t),
                                                           "--epochs", "1", "--out", t / "o4"],
        "1 GiB .pt zip bomb (1 MB file)": ["profile", pt_zip_bomb(t), "--arch", "lenet5", "--no-latency"],
        "IDX dims multiplying to 2^64": ["train", "lenet5", "--dataset", idx_folder(t, "idx_wrap", gzip.compress(wrap)),
                                         "--epochs", "1", "--out", t / "o5"],
        "ONNX input 1x100000x100000x100 (4 TB)": ["profile", onnx_huge_input(t)],
    }
    expect = {
        "label 10^12 in an .npz (10^12 class names)": (2, "big_label.npz", "label 1000000000000 out of range"),
        "label 10^9 in an IDX file": (2, "idx_big_label", "label 1000000000 out of range"),
        "1 GiB .npz zip bomb (1 MB file)": (2, "bomb.npz", "zip bomb"),
        ".npz header declaring 10^12 floats in 16 bytes": (2, "lying_header.npz", "'x.npy'", "[1000000000000]"),
        "1 GiB .pt zip bomb (1 MB file)": (2, "bomb.pt", "zip bomb"),
        "IDX dims multiplying to 2^64": (2, "train-images-idx3-ubyte.gz", "[65536, 65536, 65536, 65536]"),
        "ONNX input 1x100000x100000x100 (4 TB)": (2, "huge_input.onnx", "1x100000x100000x100", "TiB"),
        "a normal run under the same limit": (0,),
    }
    results = _batch_under_limit(cases, t)
    failures = []
    for name, r in results.items():
        record(f"{name} (2 GiB address space; {r['seconds']:.2f} s)", cmd_text(cases[name]), r["exit_code"], r["stderr"])
        code, *words = expect[name]
        err = r["stderr"]
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if r["exit_code"] != code or "Traceback" in err or (code and len(lines) != 1):
            failures.append(f"{name}: exit {r['exit_code']}\n{err[-1500:]}")
        elif code and not all(w.lower() in lines[0].lower() for w in words):
            failures.append(f"{name}: {words} not all in {lines[0]}")
    assert not failures, "\n\n".join(failures)


def test_parsers_and_validators(tmp_path):
    t = tmp_path
    deep = t / "deep.yaml"
    deep.write_text("dataset: digits\nspace: " + "[" * 20_000 + "]" * 20_000 + "\n")
    bad = {name: t / f"{name}.yaml" for name in ("complex_key", "seed_big", "seed_neg", "lr_nan")}
    bad["complex_key"].write_text("dataset: digits\n? [a, b]\n: 1\n")
    bad["seed_big"].write_text(f"dataset: digits\nseed: {10**26}\n")
    bad["seed_neg"].write_text("dataset: digits\nseed: -1\n")
    bad["lr_nan"].write_text("dataset: digits\nn_trials: 1\ntrain:\n  epochs: 1\n  lr: .nan\n")
    x = np.random.default_rng(0).integers(0, 255, (40, 8, 8)).astype(np.uint8)
    float_labels = idx_raw(0x0D, [40], (np.arange(40) % 2 + 0.7).astype(">f4").tobytes())
    ckpts = {
        "checkpoint model.json without options": ({"arch": "lenet5"}, ("model.json", "'options'")),
        "checkpoint model.json with options a list": ({"arch": "lenet5", "options": [10]}, ("model.json", "'options'")),
        "checkpoint model.json with num_classes 'ten'": ({"arch": "lenet5", "options": {"num_classes": "ten"}},
                                                         ("num_classes='ten'",)),
        "checkpoint model.json with arch 5": ({"arch": 5, "options": {}}, ("model.json", "'arch'")),
        "checkpoint model.json with input_shape 'big'": ({"arch": "lenet5", "options": {}, "input_shape": "big"},
                                                         ("model.json", "'input_shape'")),
    }
    # A study folder whose results.jsonl has a number in the middle.
    from effai import study

    sdir = t / "study_nonobject"
    sdir.mkdir()
    scfg = study.StudyConfig(dataset="digits", model="lenet300_100", quick=True, out=str(sdir))
    (sdir / "study.json").write_text(json.dumps({"identity": scfg.identity(), "key": scfg.key()}))
    (sdir / "results.jsonl").write_text('{"name": "fp32", "status": "failed"}\n42\n{"name": "fp16", "status": "ok"}\n')
    # A last.pt saved from another model than the run's.
    other = t / "resume_other"
    other.mkdir()
    from effai import zoo

    torch.save({"model": zoo.create("lenet300_100", num_classes=2, in_channels=64).state_dict()}, other / "last.pt")
    cases = {
        "YAML nested 20,000 deep → search": ["search", "--config", deep, "--out", t / "s1"],
        "YAML complex key ? [a, b] → search": ["search", "--config", bad["complex_key"], "--out", t / "s2"],
        "seed 10^26 in a search config": ["search", "--config", bad["seed_big"], "--out", t / "s3"],
        "seed -1 in a search config": ["search", "--config", bad["seed_neg"], "--out", t / "s4"],
        "lr .nan in a search config": ["search", "--config", bad["lr_nan"], "--out", t / "s5"],
        "--seed -1 → train": ["train", "lenet5", "--dataset", "synthetic", "--seed", "-1", "--out", t / "t1"],
        f"--seed {10**26} → study": ["study", "--dataset", "digits", "--quick", "--seed", str(10**26), "--out", t / "t2"],
        "--width-mult inf → profile": ["profile", "lenet5", "--width-mult", "inf", "--no-latency"],
        "--width-mult nan → profile": ["profile", "lenet5", "--width-mult", "nan", "--no-latency"],
        "--num-classes 10^11 → profile": ["profile", "lenet5", "--num-classes", str(10**11), "--no-latency"],
        "IDX float labels → train": ["train", "lenet5", "--dataset", idx_folder(t, "idx_float_labels",
                                     gzip.compress(idx_raw(0x08, [40, 8, 8], x.tobytes())),
                                     gzip.compress(float_labels)), "--out", t / "t3"],
        "IDX with 0 images → train": ["train", "lenet5", "--dataset", idx_folder(t, "idx_empty",
                                      gzip.compress(idx_raw(0x08, [0, 8, 8], b"")),
                                      gzip.compress(idx_raw(0x08, [0], b""))), "--out", t / "t4"],
        "ONNX with 0 nodes → profile": ["profile", onnx_no_nodes(t)],
        "custom op inside an If subgraph → fit": ["fit", onnx_custom_op_in_if(t), "--target", "nano33ble"],
        "results.jsonl with a number in the middle → study": ["study", "--dataset", "digits", "--model",
                                                               "lenet300_100", "--quick", "--out", sdir],
        "last.pt of another model → train (resume)": ["train", "lenet5", "--dataset", "synthetic", "--epochs", "1",
                                                      "--out", other],
    }
    expect = {
        "YAML nested 20,000 deep → search": (2, "deep.yaml", "nested too deeply"),
        "YAML complex key ? [a, b] → search": (2, "complex_key.yaml:2", "plain name"),
        "seed 10^26 in a search config": (2, "seed_big.yaml:2", "seed", "64 bits"),
        "seed -1 in a search config": (2, "seed_neg.yaml:2", "seed", "-1"),
        "lr .nan in a search config": (2, "lr_nan.yaml:5", "train.lr", "nan"),
        "--seed -1 → train": (2, "--seed", "-1"),
        f"--seed {10**26} → study": (2, "--seed", str(10**26)),
        "--width-mult inf → profile": (2, "width_mult=inf"),
        "--width-mult nan → profile": (2, "width_mult=nan"),
        "--num-classes 10^11 → profile": (2, "num_classes=100000000000"),
        "IDX float labels → train": (2, "train-labels-idx1-ubyte.gz", "integers", "float32"),
        "IDX with 0 images → train": (2, "train-images-idx3-ubyte.gz", "0 images"),
        "ONNX with 0 nodes → profile": (2, "no_nodes.onnx", "no nodes"),
        "custom op inside an If subgraph → fit": (2, "custom_in_if.onnx", "'hidden'", "com.evil:Frob"),
        "results.jsonl with a number in the middle → study": (2, "results.jsonl", "line 2", "expected an object"),
        "last.pt of another model → train (resume)": (2, "last.pt", "another model", "--no-resume"),
    }
    for name, (meta, words) in ckpts.items():
        cases[name + " → profile"] = ["profile", checkpoint_folder(t, name.replace(" ", "_"), meta), "--no-latency"]
        expect[name + " → profile"] = (2, *words)
    run_and_record(cases, t, expect)


def test_writers_refuse_odd_targets(tmp_path):
    """A folder, a dangling symlink, a FIFO and a file-size limit (EFBIG, what a full disk gives as
    ENOSPC) as --csv / --out: exit 2 and one line, or the FIFO written through; nothing half-written."""
    t = tmp_path
    (t / "a_folder").mkdir()
    os.symlink(t / "missing" / "x.csv", t / "dangling.csv")
    os.symlink(t / "nowhere", t / "dangling_out")
    cases = {
        "--csv naming a folder → profile": ["profile", "lenet5", "--no-latency", "--csv", t / "a_folder"],
        "--csv a dangling symlink → profile": ["profile", "lenet5", "--no-latency", "--csv", t / "dangling.csv"],
        "--out a dangling symlink → train": ["train", "lenet5", "--dataset", "synthetic", "--epochs", "1",
                                             "--out", t / "dangling_out"],
    }
    expect = {
        "--csv naming a folder → profile": (2, "a_folder", "is a folder"),
        "--csv a dangling symlink → profile": (2, "dangling.csv", "symbolic link", "does not exist"),
        "--out a dangling symlink → train": (2, "dangling_out", "symbolic link", "does not exist"),
    }
    run_and_record(cases, t, expect)
    assert (t / "a_folder").is_dir() and os.path.islink(t / "dangling.csv") and not (t / "missing").exists()

    fifo = t / "pipe.csv"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    r = cli_batch({"--csv a FIFO → profile": ["profile", "lenet5", "--no-latency", "--csv", fifo]}, t)
    got = reader.communicate(timeout=60)[0].decode()
    rr = r["--csv a FIFO → profile"]
    record("--csv a FIFO (named pipe) → profile", cmd_text(["profile", "lenet5", "--no-latency", "--csv", fifo]),
           rr["exit_code"], rr["stderr"], outcome=f"written through the pipe ({len(got.splitlines())} lines); "
           f"still a FIFO: {stat.S_ISFIFO(os.stat(fifo).st_mode)}")
    assert rr["exit_code"] == 0 and "Traceback" not in rr["stderr"], rr["stderr"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and got.startswith("name,")

    import resource

    out = t / "fsize"
    argv = ["train", "lenet5", "--dataset", "synthetic", "--epochs", "2", "--out", out]
    p = subprocess.run([sys.executable, "-m", "effai.cli", *map(str, argv)], capture_output=True, text=True, env=ENV,
                       timeout=300, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)))
    left = sorted(q.name for q in out.iterdir()) if out.exists() else []
    record("disk full while saving last.pt (a 200 kB file-size limit: EFBIG) → train", cmd_text(argv), p.returncode,
           p.stderr)
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "last.pt" in p.stderr and "nothing was written" in p.stderr
    assert not [n for n in left if n.endswith(".tmp")], left


_NS_SCRIPT = r"""
set -e
mount -t tmpfs -o size=4m tmpfs "$D"
mknod -m 666 "$D/null" c 1 3
mknod -m 666 "$D/full" c 1 7
mkdir "$D/small"
mount -t tmpfs -o size=120k tmpfs "$D/small"
"$PY" "$BATCH" "$CASES" "$D/results.json"
cp "$D/results.json" "$RESULTS"
for f in null full; do stat -c "$f %F %t,%T" "$D/$f"; done > "$STATS"
ls -a "$D/small/out" >> "$STATS" 2>/dev/null || true
"""


def test_device_nodes_stay_devices_and_full_disk(tmp_path):
    """In a private mount namespace (root): --csv to a null and a full device, and a training run
    on a 120 kB tmpfs. The devices stay devices; /dev/full and the full tmpfs give exit 2."""
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here (needs root): {probe.stderr.decode().strip()[:100]}")
    d = tmp_path / "dev"
    d.mkdir()
    cases = {
        "--csv a null device (as root) → profile": ["profile", "lenet5", "--no-latency", "--csv", d / "null"],
        "--csv a full device (ENOSPC) → profile": ["profile", "lenet5", "--no-latency", "--csv", d / "full"],
        "disk full (120 kB tmpfs) → train": ["train", "lenet5", "--dataset", "synthetic", "--epochs", "1",
                                             "--out", d / "small" / "out"],
    }
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps([[str(a) for a in v] for v in cases.values()]))
    env = {**ENV, "D": str(d), "PY": sys.executable, "BATCH": str(HERE / "_batch.py"), "CASES": str(spec),
           "RESULTS": str(tmp_path / "results.json"), "STATS": str(tmp_path / "stats.txt")}
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", _NS_SCRIPT], capture_output=True,
                       text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    results = dict(zip(cases, json.loads((tmp_path / "results.json").read_text()), strict=True))
    stats = (tmp_path / "stats.txt").read_text().splitlines()
    for name, r in results.items():
        record(name + " (private mount namespace)", cmd_text(cases[name]), r["exit_code"], r["stderr"])
    assert stats[:2] == ["null character special file 1,3", "full character special file 1,7"], stats
    null, full, disk = results.values()
    assert null["exit_code"] == 0 and "Traceback" not in null["stderr"], null["stderr"]
    for r, words in ((full, ("full", "no space left")), (disk, ("no space left", "nothing was written"))):
        lines = r["stderr"].strip().splitlines()
        assert r["exit_code"] == 2 and len(lines) == 1 and "Traceback" not in r["stderr"], r["stderr"]
        assert all(w in lines[0] for w in words), lines[0]
    assert not [n for n in stats[2:] if n.endswith(".tmp")], stats


def test_two_searches_on_one_folder(tmp_path):
    """The second search started on a folder in use says so (a lock), instead of racing the first
    on the SQLite schema ('table trial_values already exists')."""
    from effai.fileio import folder_lock

    out = tmp_path / "search"
    cfg = tmp_path / "s.yaml"
    cfg.write_text("dataset: digits\nn_trials: 1\ntrain:\n  epochs: 1\n")
    with folder_lock(out, "search"):  # the first search holds the folder
        r = cli_batch({"second search on a folder in use": ["search", "--config", cfg, "--out", out]}, tmp_path)
    rr = r["second search on a folder in use"]
    record("two searches on one folder: the second", cmd_text(["search", "--config", cfg, "--out", out]),
           rr["exit_code"], rr["stderr"])
    lines = rr["stderr"].strip().splitlines()
    assert rr["exit_code"] == 2 and len(lines) == 1 and "another search" in lines[0], rr["stderr"]
    assert not (out / "search.db").exists()


def test_api_refusals(tmp_path):
    from effai.fileio import read_jsonl

    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n[1, 2]\n{"b": 2}\n')
    with pytest.raises(InputError, match="line 2 is a JSON list"):
        read_jsonl(p)
    record("results.jsonl with a list in the middle → effai.fileio.read_jsonl", "read_jsonl('r.jsonl')", "InputError",
           outcome="r.jsonl: line 2 is a JSON list, expected an object (a record)")
    torch.save(lenet5_state(), tmp_path / "ok.pt")
    shutil.copy(tmp_path / "ok.pt", tmp_path / "copy.pt")
    from effai.fileio import load_torch_file

    assert set(load_torch_file(tmp_path / "copy.pt")) == set(lenet5_state())  # a real .pt passes the zip check


def test_write_atomic_follows_a_symlink_to_a_file(tmp_path):
    from effai.fileio import write_atomic

    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    os.symlink(real, link)
    write_atomic(link, "new")
    assert os.path.islink(link) and real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real.csv"]  # no temp file left
    record("--csv a symlink to a file → effai.fileio.write_atomic", "write_atomic('link.csv')", "ok",
           outcome="the file it points to replaced atomically, the link kept")
