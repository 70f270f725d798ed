"""Checkpoint directories: `model.pt` (a plain state dict) + `model.json` (how to rebuild it).

A state dict holds only tensors, so it loads with `torch.load(weights_only=True)`; the
architecture is rebuilt from the zoo by the name and options recorded in the JSON, or, for a
model from the user's own .py file (`"code": true`), from that file by its absolute
`path.py:Name` and arguments, which runs the file and so needs the trust flag.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
import torch.nn as nn

from effai import __version__
from effai.errors import InputError
from effai.fileio import load_torch_file, write_atomic, write_json


def save_checkpoint(model: nn.Module, out_dir: str | Path, data=None, result=None, train_config=None, **extra) -> Path:
    """Write `model.pt` and `model.json` into `out_dir` (atomically) and return the folder."""
    out = Path(out_dir)
    arch = getattr(model, "effai_arch", None)
    code = getattr(model, "effai_code", None)
    if code:  # the user's class: rebuilt from its file (absolute path) and arguments
        arch = {"name": code["spec"], "options": code["args"]}
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    write_atomic(out / "model.pt", buf.getvalue())
    meta = {
        "effai_version": __version__,
        "arch": arch["name"] if arch else None,
        "options": arch["options"] if arch else {},
        "input_shape": list(data.input_shape) if data is not None else None,
        "class_names": list(data.class_names) if data is not None else None,
        "dataset": data.name if data is not None else None,
        "test_accuracy": result.test_accuracy if result is not None else None,
        "train_config": train_config.__dict__ if train_config is not None else None,
        **({"code": True} if code else {}),
        **extra,
    }
    write_json(out / "model.json", meta)
    return out


def load_checkpoint(path: str | Path, trust_pickle: bool = False) -> tuple[nn.Module, dict]:
    """Rebuild the model saved by `save_checkpoint` (a folder, or its model.pt) and its metadata."""
    from effai import zoo

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta_path = folder / "model.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder}: not a checkpoint folder (no model.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{meta_path}: not valid JSON ({e})") from None
    _check_meta(meta, meta_path)
    if meta.get("code"):
        from effai.zoo import usercode

        if not trust_pickle:
            raise InputError(f"{folder}: its architecture {meta['arch']} {usercode.TRUST_REFUSAL}")
        model = usercode.build(meta["arch"], meta["options"], trust_code=True)
    else:
        model = zoo.create(meta["arch"], **meta["options"])
    state = load_torch_file(folder / "model.pt", trust_pickle=trust_pickle)
    load_state_dict_checked(model, state, folder / "model.pt")
    return model, meta


def _check_meta(meta, meta_path: Path) -> None:
    """model.json must name the zoo `arch` (a string) and its `options` (an object of option
    names to values); `input_shape`, when present, is a list of positive integers."""
    if not isinstance(meta, dict) or not meta.get("arch"):
        raise InputError(f"{meta_path}: missing field 'arch' (the zoo model name)")
    if not isinstance(meta["arch"], str):
        raise InputError(f"{meta_path}: field 'arch' must be a zoo model name (a string), got {meta['arch']!r}"[:300])
    if "options" not in meta:
        raise InputError(f"{meta_path}: missing field 'options' (the zoo options, e.g. {{\"num_classes\": 10}})")
    if not isinstance(meta["options"], dict):
        raise InputError(f"{meta_path}: field 'options' must be an object of option names to values, "
                         f"got {type(meta['options']).__name__}")
    shape = meta.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and shape and all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d < 2**31 for d in shape)):
        raise InputError(f"{meta_path}: field 'input_shape' must be a list of positive integers, got {shape!r}"[:300])


def load_state_dict_checked(model: nn.Module, state, where: Path, hint: str = "is this the right --arch?") -> None:
    """`load_state_dict`, with errors that name the first mismatching key and shapes, then `hint`."""
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{where}: expected a state dict (names to tensors), got {type(state).__name__}")
    own = model.state_dict()
    for k, v in own.items():
        if k not in state:
            raise InputError(f"{where}: missing key {k!r} (shape {tuple(v.shape)}); {hint}")
        if tuple(state[k].shape) != tuple(v.shape):
            raise InputError(
                f"{where}: key {k!r} has shape {tuple(state[k].shape)}, the architecture expects {tuple(v.shape)}; "
                f"{hint}"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise InputError(f"{where}: unexpected key {extra[0]!r} ({len(extra)} extra); {hint}")
    model.load_state_dict(state)
    check_finite(model, where)


def check_finite(model: nn.Module, where: str | Path = "model") -> None:
    """Raise InputError naming the first parameter or buffer that holds NaN or Inf."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not torch.isfinite(t).all():
            n_nan = int(torch.isnan(t).sum())
            n_inf = int(torch.isinf(t).sum())
            raise InputError(f"{where}: tensor {name!r} holds {n_nan} NaN and {n_inf} Inf values")
