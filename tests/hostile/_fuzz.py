"""The hostile fuzzer: hypothesis mutates valid inputs and runs each through the commands that read it.

Usage: python _fuzz.py WORKDIR SUMMARY.json BUDGET_S. Runs in its own process (test_hostile_fuzz
starts it under an address-space limit), every command in-process through `effai.cli.main`
(`_batch.run_one`), so one import serves all inputs. The property, for every input:

- exit code 0, 1 or 2; never a traceback (an exception escaping `main`, MemoryError included:
  the address-space limit turns an oversized allocation into one);
- exit 2 prints exactly one stderr line, starting "error: ";
- nothing is written (or changed) outside the command's --out folder.

Inputs are derived from a fixed seed (derandomized, no example database), so CI runs the same
inputs each time; each class stops early when the time budget is spent. The summary records the
inputs tried and the failures per class.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _batch import run_one  # noqa: E402

INTERESTING_INTS = [0, 1, -1, 2, 7, 255, 256, 65535, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 10**12, 10**26]
INTERESTING_FLOATS = [0.0, -0.0, 1e-300, 1e300, float("nan"), float("inf"), float("-inf"), 0.5, -1.5]
HOSTILE_TEXT = ["", " ", "../../etc/passwd", "/dev/null", "a" * 300, "\u00e9\u4e2d\U0001f600", "nan", "inf", "-1",
                "1e309", "0x10", "{}", "[]", "null", "~", "? [a, b]\n: 1", "!!python/object:os.system", "&a [*a]",
                "[" * 200 + "]" * 200]
MUTATION = st.lists(st.tuples(st.sampled_from(["flip", "truncate", "insert", "overwrite"]),
                              st.floats(0, 1, allow_nan=False), st.binary(min_size=1, max_size=8)),
                    min_size=1, max_size=4)


def mutate_bytes(data: bytes, ops) -> bytes:
    """Apply byte-level mutations: flip, truncate, insert, overwrite at relative positions."""
    b = bytearray(data)
    for op, where, blob in ops:
        i = min(int(where * len(b)), max(len(b) - 1, 0))
        if op == "flip" and b:
            b[i] ^= blob[0] or 0xFF
        elif op == "truncate":
            del b[i:]
        elif op == "insert":
            b[i:i] = blob
        elif op == "overwrite":
            b[i:i + len(blob)] = blob
    return bytes(b)


class Fuzzer:
    def __init__(self, work: Path, budget_s: float):
        self.work, self.budget, self.start = work, budget_s, time.monotonic()
        self.cwd = work / "cwd"
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.n = 0
        self.stats: dict[str, dict] = {}
        self.failures: list[dict] = []
        self._last, self._kept = None, 0

    def out_of_time(self) -> bool:
        return time.monotonic() - self.start > self.budget

    def fresh(self, kind: str) -> Path:
        """A new folder for one input; the previous one is removed unless it failed (kept as evidence)."""
        import shutil

        if self._last is not None and len(self.failures) == self._kept:
            shutil.rmtree(self._last, ignore_errors=True)
        self._kept = len(self.failures)
        self.n += 1
        d = self._last = self.work / "in" / f"{kind}{self.n}"
        d.mkdir(parents=True)
        return d

    def check(self, kind: str, argv: list, out: Path | None = None) -> None:
        """Run `argv` in-process and check the property; record a failure with the input."""
        before = _snapshot(self.work, out)
        os.chdir(self.cwd)
        r = run_one([str(a) for a in argv])
        after = _snapshot(self.work, out)
        self.record(kind, argv, r["exit_code"], r["stderr"], before, after)

    def record(self, kind: str, argv: list, code: int, err: str, before=None, after=None) -> None:
        r = {"exit_code": code}
        lines = [ln for ln in err.splitlines() if ln.strip()]
        problem = None
        if "Traceback (most recent call last)" in err or "Exception ignored" in err:
            problem = "traceback"
        elif r["exit_code"] not in (0, 1, 2):
            problem = f"exit {r['exit_code']}"
        elif r["exit_code"] == 2 and (len(lines) != 1 or not lines[0].startswith("error: ")):
            problem = f"exit 2 with {len(lines)} stderr lines"
        elif before != after:
            changed = sorted(set(before.items()) ^ set(after.items()))[:3]
            problem = f"wrote outside --out: {changed}"
        s = self.stats.setdefault(kind, {"inputs": 0, "failures": 0, "exit_codes": {}})
        s["inputs"] += 1
        s["exit_codes"][str(r["exit_code"])] = s["exit_codes"].get(str(r["exit_code"]), 0) + 1
        if problem:
            s["failures"] += 1
            self.failures.append({"class": kind, "argv": [str(a) for a in argv], "problem": problem,
                                  "stderr": err[-2500:]})


def _snapshot(root: Path, out: Path | None) -> dict:
    """(path -> (size, mtime)) of everything under `root` except the --out folder."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if out is not None and Path(dirpath) == out.parent and out.name in dirnames:
            dirnames.remove(out.name)
        for f in filenames:
            p = os.path.join(dirpath, f)
            try:
                st_ = os.lstat(p)
                snap[p] = (st_.st_size, st_.st_mtime_ns)
            except OSError:
                pass
        for d in dirnames:
            snap[os.path.join(dirpath, d)] = ("dir",)
    return snap


# ---------------------------------------------------------------- the seeds (valid inputs)
def _torch_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _idx(arr: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _onnx_model():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc"),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=[w, b]),
                             opset_imports=[helper.make_opsetid("", 17)])


SEARCH_YAML = """\
dataset: digits
n_trials: 1
seed: 0
train:
  epochs: 1
  finetune_epochs: 0
  lr: 0.003
space:
  family: lenet300_100
  width_mult: [0.25]
  prune_ratio: [0.0]
  bits: [32]
"""


def _hostile_json_value(draw):
    return draw(st.one_of(st.sampled_from(INTERESTING_INTS), st.sampled_from(INTERESTING_FLOATS).map(
        lambda f: f if f == f and abs(f) != float("inf") else str(f)), st.sampled_from(HOSTILE_TEXT),
        st.just(None), st.just([]), st.just({}), st.just([1, 2, 3]), st.booleans()))


def _small_search(fz: Fuzzer, path: Path) -> bool:
    """True if `effai search` on `path` is quick to run: an invalid config (refused at once), or
    one trial of one epoch on digits, stored in --out. Otherwise the config is only loaded (the
    same parser and validator the command uses), which must succeed or raise an InputError."""
    from effai.errors import InputError
    from effai.search.config import load_config

    try:
        cfg = load_config(path)
    except InputError:
        return True
    except Exception as e:  # noqa: BLE001 - what the command would print as a traceback
        fz.record("yaml config", ["search.load_config", str(path)], 1, f"Traceback (most recent call last)\n{e!r}")
        return False
    if (cfg.n_trials <= 1 and cfg.train.epochs <= 1 and cfg.train.finetune_epochs <= 1 and cfg.dataset == "digits"
            and cfg.storage is None and cfg.workers == 1 and cfg.backend == "local" and len(cfg.initial) <= 1):
        return True
    fz.record("yaml config", ["search.load_config", str(path)], 0, "")
    return False


# ---------------------------------------------------------------- the classes
def run_all(fz: Fuzzer, examples: int) -> None:  # noqa: C901 - one short nested hypothesis test per input class, sharing the seeds
    import torch
    import yaml
    from test_hostile_configs import GOOD_TARGET

    from effai import zoo

    state = zoo.create("lenet5").state_dict()
    pt_seed = _torch_bytes(state)
    meta_seed = {"arch": "lenet5", "options": {"num_classes": 10}, "input_shape": [1, 28, 28]}
    onnx_seed = _onnx_model()
    rng = np.random.default_rng(0)
    x8 = rng.integers(0, 255, (40, 8, 8), dtype=np.uint8)
    y2 = (np.arange(40) % 2).astype(np.uint8)
    common = settings(max_examples=examples, database=None, derandomize=True, deadline=None,
                      suppress_health_check=list(HealthCheck), print_blob=False)

    def train(kind, data, d):
        fz.check(kind, ["train", "lenet300_100", "--dataset", data, "--epochs", "1", "--batch-size", "64",
                        "--out", d / "out", "--json"], d / "out")

    @common
    @given(st.data())
    def checkpoints(data):
        if fz.out_of_time():
            return
        d = fz.fresh("ckpt")
        how = data.draw(st.sampled_from(["bytes", "tensors", "meta"]))
        sd = dict(state)
        meta = copy.deepcopy(meta_seed)
        raw = pt_seed
        if how == "bytes":
            raw = mutate_bytes(pt_seed, data.draw(MUTATION))
        elif how == "tensors":
            key = data.draw(st.sampled_from(sorted(sd)))
            change = data.draw(st.sampled_from(["drop", "shape", "dtype", "nan", "extra", "list", "scalar"]))
            if change == "drop":
                del sd[key]
            elif change == "shape":
                sd[key] = torch.zeros(data.draw(st.lists(st.integers(0, 9), min_size=0, max_size=4)))
            elif change == "dtype":
                sd[key] = sd[key].to(data.draw(st.sampled_from([torch.int8, torch.float16, torch.bool, torch.int64])))
            elif change == "nan":
                sd[key] = torch.full_like(sd[key], data.draw(st.sampled_from([float("nan"), float("inf")])))
            elif change == "extra":
                sd[data.draw(st.sampled_from(HOSTILE_TEXT))] = torch.zeros(1)
            elif change == "list":
                sd = list(sd.values())
            else:
                sd = 3
            raw = _torch_bytes(sd)
        else:
            field = data.draw(st.sampled_from(["arch", "options", "input_shape", "num_classes", "whole"]))
            value = _hostile_json_value(data.draw) if field != "arch" else data.draw(
                st.sampled_from(["lenet5", "resnet19", "", "../x", 5, None]))
            if field == "num_classes":
                meta["options"]["num_classes"] = value
            elif field == "whole":
                meta = value
            else:
                meta[field] = value
        folder = d / "ckpt"
        folder.mkdir()
        (folder / "model.pt").write_bytes(raw)
        (folder / "model.json").write_text(json.dumps(meta))
        fz.check("checkpoint", ["profile", folder, "--no-latency"])
        (d / "state.pt").write_bytes(raw)
        fz.check("checkpoint", ["fit", d / "state.pt", "--arch", "lenet5", "--target", "nano33ble"])

    @common
    @given(st.data())
    def onnx_files(data):
        if fz.out_of_time():
            return
        d = fz.fresh("onnx")
        m = copy.deepcopy(onnx_seed)
        how = data.draw(st.sampled_from(["bytes", "dims", "op", "drop_node", "domain", "rename"]))
        if how == "dims":
            dim = m.graph.input[0].type.tensor_type.shape.dim[data.draw(st.integers(0, 1))]
            dim.dim_value = data.draw(st.sampled_from([0, 1, 3, 10**5, 10**9, 2**62]))
        elif how == "op":
            m.graph.node[data.draw(st.integers(0, 1))].op_type = data.draw(st.sampled_from(
                ["Frob", "Conv", "Loop", "If", "", "Gemm", "MaxPool"]))
        elif how == "drop_node":
            del m.graph.node[data.draw(st.integers(0, 1))]
        elif how == "domain":
            m.graph.node[data.draw(st.integers(0, 1))].domain = data.draw(st.sampled_from(
                ["com.evil", "ai.onnx.ml", "com.microsoft", "x" * 100]))
        elif how == "rename":
            m.graph.node[1].input[0] = data.draw(st.sampled_from(["missing", "", "x", "w"]))
        raw = m.SerializeToString()
        if how == "bytes":
            raw = mutate_bytes(raw, data.draw(MUTATION))
        p = d / "model.onnx"
        p.write_bytes(raw)
        fz.check("onnx", ["profile", p, "--no-latency"])
        fz.check("onnx", ["fit", p, "--target", "nano33ble"])

    @common
    @given(st.data())
    def npz_files(data):
        if fz.out_of_time():
            return
        d = fz.fresh("npz")
        arrays = {"x": x8.astype(np.float32) / 255, "y": y2.astype(np.int64)}
        how = data.draw(st.sampled_from(["bytes", "labels", "shape", "dtype", "names", "pixels"]))
        if how == "labels":
            arrays["y"] = arrays["y"].copy()
            arrays["y"][data.draw(st.integers(0, 39))] = data.draw(st.sampled_from(
                [v for v in INTERESTING_INTS if -2**63 <= v < 2**63]))
        elif how == "shape":
            arrays["x"] = np.zeros(data.draw(st.lists(st.integers(0, 9), min_size=0, max_size=5)), np.float32)
        elif how == "dtype":
            arrays[data.draw(st.sampled_from(["x", "y"]))] = np.array(["a"] * 40)
        elif how == "names":
            arrays["class_names"] = np.array(data.draw(st.lists(st.sampled_from(HOSTILE_TEXT), max_size=3)))
        elif how == "pixels":
            arrays["x"] = np.full((40, 8, 8), data.draw(st.sampled_from(INTERESTING_FLOATS)), np.float32)
        raw = _npz_bytes(**arrays)
        if how == "bytes":
            raw = mutate_bytes(raw, data.draw(MUTATION))
        p = d / "data.npz"
        p.write_bytes(raw)
        train("npz", p, d)

    @common
    @given(st.data())
    def idx_files(data):
        if fz.out_of_time():
            return
        d = fz.fresh("idx")
        folder = d / "idx"
        folder.mkdir()
        images, labels = _idx(x8), _idx(y2)
        how = data.draw(st.sampled_from(["bytes", "header", "dims", "labels", "gzip"]))
        target = data.draw(st.sampled_from(["images", "labels"]))
        raw = images if target == "images" else labels
        if how == "bytes":
            raw = mutate_bytes(raw, data.draw(MUTATION))
        elif how == "header":
            raw = bytes([0, 0, data.draw(st.integers(0, 255)), data.draw(st.integers(0, 255))]) + raw[4:]
        elif how == "dims":
            ndim = raw[3]
            dims = [data.draw(st.sampled_from([v for v in INTERESTING_INTS if 0 <= v < 2**32])) for _ in range(ndim)]
            raw = raw[:4] + struct.pack(f">{ndim}I", *dims) + raw[4 + 4 * ndim:]
        elif how == "labels":
            code = data.draw(st.sampled_from([0x09, 0x0B, 0x0C, 0x0D, 0x0E]))
            vals = np.array([data.draw(st.sampled_from([0, 1, -1, 2**31 - 1, 3])) for _ in range(40)])
            dt = {0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
            raw = bytes([0, 0, code, 1]) + struct.pack(">I", 40) + vals.astype(dt).tobytes()
            target = "labels"
        gz = gzip.compress(raw)
        if how == "gzip":
            gz = mutate_bytes(gz, data.draw(MUTATION))
        (folder / "train-images-idx3-ubyte.gz").write_bytes(gz if target == "images" else gzip.compress(images))
        (folder / "train-labels-idx1-ubyte.gz").write_bytes(gz if target == "labels" else gzip.compress(labels))
        train("idx", folder, d)

    @common
    @given(st.data())
    def image_folders(data):
        if fz.out_of_time():
            return
        from PIL import Image

        d = fz.fresh("img")
        folder = d / "images"
        for c in ("a", "b"):
            (folder / c).mkdir(parents=True)
            for i in range(10):  # 10 a class: 1 for test, 1 for validation, 8 for training
                Image.fromarray(x8[i]).save(folder / c / f"{i}.png")
        victim = folder / data.draw(st.sampled_from(["a", "b"])) / f"{data.draw(st.integers(0, 9))}.png"
        how = data.draw(st.sampled_from(["bytes", "ihdr", "empty_class", "size"]))
        raw = victim.read_bytes()
        if how == "bytes":
            victim.write_bytes(mutate_bytes(raw, data.draw(MUTATION)))
        elif how == "ihdr":  # width/height in the PNG header (bytes 16..24)
            w, h = (data.draw(st.sampled_from([0, 1, 8, 65535, 2**31 - 1])) for _ in range(2))
            victim.write_bytes(raw[:16] + struct.pack(">II", w, h) + raw[24:])
        elif how == "empty_class":
            (folder / "c").mkdir()
        else:
            Image.fromarray(np.zeros((data.draw(st.integers(1, 20)), 8), np.uint8)).save(victim)
        train("image folder", folder, d)

    @common
    @given(st.data())
    def yaml_configs(data):
        if fz.out_of_time():
            return
        d = fz.fresh("yaml")
        kind = data.draw(st.sampled_from(["catalogue", "catalogue", "search"]))
        text = GOOD_TARGET if kind == "catalogue" else SEARCH_YAML
        how = data.draw(st.sampled_from(["value", "text", "value"]))
        if how == "value":
            doc = yaml.safe_load(text)
            node, keys = doc, []
            while isinstance(node, dict) and node and data.draw(st.booleans()):
                k = data.draw(st.sampled_from(sorted(node)))
                keys.append(k)
                if not isinstance(node[k], dict):
                    break
                node = node[k]
            parent = doc
            for k in keys[:-1]:
                parent = parent[k]
            key = keys[-1] if keys else data.draw(st.sampled_from(sorted(doc)))
            raw_value = data.draw(st.sampled_from(HOSTILE_TEXT + [str(v) for v in INTERESTING_INTS] +
                                                  [".nan", ".inf", "-.inf", "1e400"]))
            parent[key] = "__HOSTILE__"
            dumped = yaml.safe_dump(doc, sort_keys=False).replace("__HOSTILE__", raw_value.replace("\n", " "))
            text = dumped
        else:
            text = mutate_bytes(text.encode(), data.draw(MUTATION)).decode("utf-8", "replace")
        p = d / f"{kind}.yaml"
        p.write_text(text, encoding="utf-8")
        if kind == "catalogue":
            fz.check("yaml config", ["targets", "--catalogue", p, "--json"])
        elif _small_search(fz, p):  # a valid config that would search for minutes is only parsed
            fz.check("yaml config", ["search", "--config", p, "--out", d / "out", "--json"], d / "out")

    @common
    @given(st.data())
    def cli_args(data):
        if fz.out_of_time():
            return
        d = fz.fresh("argv")
        templates = [
            ["profile", "lenet5", "--no-latency", "--width-mult", "1.0", "--num-classes", "10", "--resolution", "28",
             "--batch-size", "1", "--input", "1x1x28x28", "--top", "5"],
            ["fit", "lenet5", "--target", "nano33ble", "--dtype", "int8", "--arena-bytes", "1000"],
            ["train", "lenet300_100", "--dataset", "digits", "--epochs", "1", "--lr", "0.003", "--seed", "0",
             "--batch-size", "64", "--out", str(d / "out")],
            ["numerics", "cast", "--format", "bf16", "1.5"],
            ["zoo", "list", "--json"],
        ]
        argv = list(data.draw(st.sampled_from(templates)))
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.integers(1, len(argv) - 1))
            if argv[0] == "train" and (argv[i] == "--epochs" or argv[i - 1] == "--epochs"):
                continue  # a valid --epochs 10**9 would train for hours: the value is checked by typer
            what = data.draw(st.sampled_from(["replace", "insert", "drop"]))
            token = data.draw(st.sampled_from(HOSTILE_TEXT + [str(v) for v in INTERESTING_INTS + INTERESTING_FLOATS]
                                              + ["--json", "--out", "--help", "--trust-code", "--bogus"]))
            if what == "replace":
                argv[i] = token
            elif what == "insert":
                argv.insert(i, token)
            elif len(argv) > 2:
                del argv[i]
        if "--help" in argv:
            argv.remove("--help")
        fz.check("cli arguments", argv, d / "out")

    for fn in (checkpoints, onnx_files, npz_files, idx_files, image_folders, yaml_configs, cli_args):
        fn()


def main() -> None:
    work, summary, budget = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    examples = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    fz = Fuzzer(work, budget)
    run_all(fz, examples)
    total = sum(s["inputs"] for s in fz.stats.values())
    line = closing_line(total, len(fz.failures), fz.stats)
    summary.write_text(json.dumps({"inputs": total, "failures": len(fz.failures), "classes": fz.stats,
                                   "failed": fz.failures[:20], "seconds": time.monotonic() - fz.start,
                                   "line": line}, indent=1))
    print(line)


def closing_line(inputs: int, failures: int, stats: dict) -> str:
    classes = ", ".join(f"{k} {v['inputs']}" for k, v in stats.items())
    return f"hostile fuzzer: {inputs} inputs tried ({classes}), {failures} failures"


if __name__ == "__main__":
    main()
