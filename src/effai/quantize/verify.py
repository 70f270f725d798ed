"""The verification gate every exported file passes: load it in its runtime, run held-out inputs,
compare with the torch model it came from.

The floor is absolute (default 20 dB output SQNR and 99% top-1 agreement), never relative to
another candidate that may itself be broken. Below it the export is refused, naming the layers
that lose most: for a file from `quantize_`'s simulation, the QuantLayers whose output drifts
most from torch's; for a file quantized by ONNX Runtime from the float model, the ops whose
output SQNR against the float graph drops most below that of their inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from effai.errors import InputError

MIN_SQNR_DB = 20.0
MIN_AGREEMENT = 0.99


class ExportRefused(InputError):
    """The exported file cannot be loaded by its runtime, or its outputs are below the floor;
    nothing was written."""


@dataclass(frozen=True)
class Verification:
    """How the exported file compares with its source on `samples` held-out inputs.

    `top1_agreement` is None where the output has no classes to agree on (one value per row).
    `worst_layers` (name, dB) is filled when the check failed: per-layer SQNR of the layers that
    lose most, worst first.
    """

    runtime: str
    samples: int
    sqnr_db: float
    top1_agreement: float | None
    min_sqnr_db: float
    min_agreement: float
    worst_layers: tuple[tuple[str, float], ...] = field(default=())

    @property
    def passed(self) -> bool:
        ok_sqnr = self.sqnr_db >= self.min_sqnr_db
        return ok_sqnr and (self.top1_agreement is None or self.top1_agreement >= self.min_agreement)

    def summary(self) -> str:
        agree = "" if self.top1_agreement is None else f", top-1 agreement {self.top1_agreement:.1%}"
        return f"SQNR {self.sqnr_db:.1f} dB{agree} on {self.samples} inputs in {self.runtime}"

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "samples": self.samples, "sqnr_db": _finite(self.sqnr_db),
                "top1_agreement": self.top1_agreement, "min_sqnr_db": self.min_sqnr_db,
                "min_agreement": self.min_agreement, "passed": self.passed,
                "worst_layers": [[n, _finite(v)] for n, v in self.worst_layers]}


def _finite(v: float):
    return None if math.isinf(v) else float(v)


Row = np.ndarray | tuple[np.ndarray, ...]  # one call's input: an array, or one per model input


def rows(inputs, batch: int = 1) -> list[Row]:
    """Arrays of `batch` rows (the batch the file was exported at; batch 1 as deployed) from a
    tensor of held-out inputs (a tuple of arrays, one per input, from a tuple or dict of input
    tensors): float32, or the integer dtype of token ids as given; a last incomplete chunk is
    dropped, and fewer rows than one batch are repeated to fill it."""
    from effai.profile.inputs import tensors_of

    ts = [t.detach().cpu() for t in tensors_of(inputs)]
    ts = [t.float() if t.is_floating_point() else t for t in ts]
    if len({len(t) for t in ts}) != 1:
        raise InputError(f"verify_inputs: every input needs the same number of rows, got {[len(t) for t in ts]}")
    if len(ts[0]) < batch:
        ts = [t.repeat(-(-batch // len(t)), *([1] * (t.dim() - 1)))[:batch] for t in ts]
    out: list[Any] = [tuple(t[i:i + batch].numpy() for t in ts) for i in range(0, len(ts[0]) - batch + 1, batch)]
    return [r[0] for r in out] if len(ts) == 1 else out


def _args(row: Row) -> tuple[np.ndarray, ...]:
    return row if isinstance(row, tuple) else (row,)


def load(path, runtime: str, threads: int = 1):
    """The file's runner in `runtime`, or ExportRefused saying the runtime cannot load it."""
    from effai.profile.latency import onnx_runner

    try:
        return onnx_runner(path, runtime, threads)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any load failure means the file is not deployable
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ExportRefused(f"export_onnx: {runtime} cannot load the exported file ({msg}); nothing written") from None


def compare(reference: np.ndarray, deployed: np.ndarray, runtime: str, min_sqnr_db: float,
            min_agreement: float) -> Verification:
    from effai.numerics import sqnr_db

    ref = reference.reshape(len(reference), -1)
    out = deployed.reshape(len(deployed), -1)
    agree = float((ref.argmax(1) == out.argmax(1)).mean()) if ref.shape[1] > 1 else None
    return Verification(runtime, len(ref), float(sqnr_db(ref, out)), agree, min_sqnr_db, min_agreement)


def run_file(run, inputs: list[Row]) -> np.ndarray:
    return np.concatenate([run(*_args(x))[0] for x in inputs])


def torch_outputs(model: nn.Module, inputs: list[Row], names: list[str] | None = None) -> np.ndarray:
    """The torch model's outputs on `inputs`: in one batch (torch at batch 1 is slow), or one row
    at a time where a layer's rounding depends on the batch (dynamic activation ranges); `names`:
    the keywords the model takes its inputs by (a dict of inputs), else positional."""
    from effai.profile.inputs import first_tensor

    def call(arrays):
        ts = [torch.from_numpy(a) for a in arrays]
        return first_tensor(model(**dict(zip(names, ts, strict=True))) if names else model(*ts)).numpy()

    per_batch = any(getattr(m, "mode", None) in ("dynamic", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1")
                    for m in model.modules())
    with torch.no_grad():
        if not per_batch:
            return call([np.concatenate(a) for a in zip(*map(_args, inputs), strict=True)])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # batch-1 calls gain nothing from threads, and lose 20x on a loaded machine
        try:
            return np.concatenate([call(_args(x)) for x in inputs])
        finally:
            torch.set_num_threads(threads)


def refusal(v: Verification, what: str) -> ExportRefused:
    worst = "; ".join(f"{n} {db:.1f} dB" for n, db in v.worst_layers) or "not located"
    return ExportRefused(f"export_onnx: the {what} file is below the floor: {v.summary()} (floor {v.min_sqnr_db:g} dB, "
                         f"{v.min_agreement:.0%} agreement); layers losing most: {worst}; nothing written")


# ------------------------------------------------------------------ per-layer SQNR
def _with_outputs(proto, names: list[str]) -> bytes:
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend([onnx.ValueInfoProto(name=n) for n in names if n not in have])
    return m.SerializeToString()


def _intermediates(model_bytes: bytes, names: list[str], inputs: list[Row]) -> dict[str, np.ndarray]:
    from effai.profile.latency import ort_session

    sess = ort_session(model_bytes, 1)
    feeds = [i.name for i in sess.get_inputs()]
    got: dict[str, list] = {n: [] for n in names}
    for x in inputs:
        for n, v in zip(names, sess.run(names, dict(zip(feeds, _args(x), strict=True))), strict=True):
            got[n].append(np.asarray(v, np.float32))
    return {n: np.concatenate(v) for n, v in got.items()}


def simulated_layer_sqnr(model: nn.Module, proto, layers, inputs: list[Row], worst: int = 3,
                         names: list[str] | None = None):
    """Per QuantLayer: SQNR of the file's layer output against torch's, and how much it drops
    from the previous layer's; the `worst` by drop, as (name, SQNR dB)."""
    from effai.numerics import sqnr_db

    first: dict[str, str] = {}
    for layer in layers:
        first.setdefault(layer.name, layer.output)
    seen: dict[str, list] = {n: [] for n in first}
    hooks = [m.register_forward_hook(lambda mod, a, y, _n=n: seen[_n].append(y.detach().numpy().copy()))
             for n, m in model.named_modules() if n in first]  # a copy: an in-place ReLU after the layer rewrites y
    try:
        torch_outputs(model, inputs, names)
    finally:
        for h in hooks:
            h.remove()
    got = _intermediates(_with_outputs(proto, list(first.values())), list(first.values()), inputs)
    scores, prev = [], math.inf
    for name, tensor in first.items():
        outs = seen[name]  # one batch per call, or (dynamic ranges) one row per call; a shared layer: the first call
        ref = outs[0] if len(outs[0]) == len(inputs) else np.concatenate(outs[::len(outs) // len(inputs)])
        db = float(sqnr_db(ref, got[tensor]))
        scores.append((min(prev, 200.0) - min(db, 200.0), name, db))
        prev = db
    return tuple((n, db) for _, n, db in sorted(scores, reverse=True) if db < 200.0)[:worst]


def onnx_layer_sqnr(float_path, quant_path, inputs: list[Row], worst: int = 3):
    """Per op of the float graph whose output the quantized graph still has (float, or its
    `_quantized` uint8/int8 twin with scale and zero point): SQNR against the float graph, ranked
    by how far it falls below the SQNR of the op's inputs; the `worst`, as (op name, SQNR dB)."""
    import onnx
    from onnx import numpy_helper

    from effai.numerics import sqnr_db

    fg, qg = onnx.load(str(float_path)).graph, onnx.load(str(quant_path)).graph
    q_values = {t for n in qg.node for t in n.output}
    q_inits = {t.name: numpy_helper.to_array(t) for t in qg.initializer}
    ops = [n for n in fg.node if n.op_type not in ("Constant", "Shape", "Gather", "Unsqueeze", "Concat")]
    pairs: dict[str, tuple] = {}  # float tensor -> (quantized tensor, scale or None, zero point or None)
    for n in ops:
        for t in n.output:
            if t in q_values:
                pairs[t] = (t, None, None)
            elif f"{t}_quantized" in q_values and f"{t}_scale" in q_inits:
                pairs[t] = (f"{t}_quantized", q_inits[f"{t}_scale"], q_inits.get(f"{t}_zero_point"))
    if not pairs:
        return ()
    names = list(pairs)[:400]
    ref = _intermediates(_with_outputs(onnx.load(str(float_path)), names), names, inputs)
    qnames = [pairs[n][0] for n in names]
    got = _intermediates(_with_outputs(onnx.load(str(quant_path)), qnames), qnames, inputs)
    db = {}
    for n in names:
        qn, s, z = pairs[n]
        v = got[qn].astype(np.float32)
        if s is not None:
            v = (v - (0 if z is None else z.astype(np.float32))) * s
        if ref[n].dtype.kind == "f" and ref[n].shape == v.shape and np.any(ref[n]):
            db[n] = float(sqnr_db(ref[n], v))
    scores, last = [], 200.0
    for n in ops:  # graph order: an op whose inputs are not tracked is judged against the last tracked tensor
        for t in (t for t in n.output if t in db):
            before = [min(db[i], 200.0) for i in n.input if i in db]
            scores.append(((min(before) if before else last) - min(db[t], 200.0), n.name or t, db[t]))
            last = min(db[t], 200.0)
    return tuple((n, d) for _, n, d in sorted(scores, reverse=True) if d < 200.0)[:worst]


def check_path(path: Path) -> None:
    if path.suffix != ".onnx":
        raise InputError(f"path {path}: expected a file name ending in .onnx")
