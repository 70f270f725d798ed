"""The user's own model from a Python file: `path/to/file.py:ClassName` (or a function that
returns an `nn.Module`), built with `--model-args` JSON.

Loading a .py file runs it, so nothing here reads or executes the file unless the caller says
the user trusts it (the CLI's --trust-code). Every failure inside the user's code (a syntax
error, an import error, an exception in `__init__`) becomes one InputError line that names the
file and the line, never a traceback. A built model carries `model.effai_code = {"spec", "args"}`
(the absolute path), so a checkpoint of it records how to rebuild it from any folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import torch.nn as nn

from effai.errors import InputError
from effai.zoo.registry import _BUILDERS, create

_SPEC = re.compile(r"(?P<file>.+\.py)(?::(?P<name>[A-Za-z_][\w.]*))?")
_MODULES: dict[tuple[str, int, int], ModuleType] = {}  # (path, mtime_ns, size) -> the module, run once
# Options a zoo builder takes; a user's class gets those its __init__ names (and --model-args leaves unset).
ZOO_OPTIONS = ("num_classes", "in_channels", "width_mult", "resolution")
TRUST_REFUSAL = "is Python code (loading it runs it) and is refused by default; pass --trust-code only if you trust it"


def is_code_spec(spec: str | None) -> bool:
    """True for `file.py` or `file.py:Name`.

    >>> is_code_spec("models/mynet.py:TinyCNN"), is_code_spec("lenet5"), is_code_spec("runs/x/model.pt")
    (True, False, False)
    """
    return bool(spec) and _SPEC.fullmatch(str(spec)) is not None


def split_spec(spec: str) -> tuple[Path, str]:
    """(file, name) of `file.py:Name`, checked without reading the file.

    >>> split_spec("mynet.py")
    Traceback (most recent call last):
    effai.errors.InputError: mynet.py: name the model in the file, e.g. mynet.py:MyNet (a class or a function returning an nn.Module)
    """
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise InputError(f"{spec}: expected path/to/file.py:ClassName")
    path = Path(m["file"])
    if not m["name"]:
        raise InputError(f"{spec}: name the model in the file, e.g. {spec}:MyNet (a class or a function "
                         "returning an nn.Module)")
    return path, m["name"]


def parse_model_args(text: str | None) -> dict:
    """The --model-args JSON object (keyword arguments of the user's class).

    >>> parse_model_args('{"width": 16}')
    {'width': 16}
    >>> parse_model_args("[1, 2]")
    Traceback (most recent call last):
    effai.errors.InputError: --model-args: expected a JSON object of keyword arguments, e.g. '{"width": 16}', got a list
    """
    if text is None or not text.strip():
        return {}
    try:
        args = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"--model-args: not valid JSON ({e.msg} at character {e.pos}); "
                         "expected an object, e.g. '{\"width\": 16}'") from None
    if not isinstance(args, dict):
        raise InputError("--model-args: expected a JSON object of keyword arguments, e.g. '{\"width\": 16}', "
                         f"got a {type(args).__name__}")
    return args


def check_trusted(spec: str, trust_code: bool) -> None:
    """Refuse a .py model unless the user trusts it (nothing is read before this passes)."""
    if not trust_code:
        raise InputError(f"{spec}: a .py model {TRUST_REFUSAL}")


def fingerprint(spec: str) -> str:
    """A short hash of the file's bytes: a study of an edited file is a different study."""
    path, _ = split_spec(spec)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


def build(spec: str, args: dict | None = None, trust_code: bool = False, **offered) -> nn.Module:
    """Run `file.py` (once per file version) and build `Name(**args)`.

    `offered` are zoo-style options (`ZOO_OPTIONS`: num_classes, in_channels, ...) passed only
    where the class's signature names them and `args` does not set them, so a class written
    with `num_classes` fits each data set as a zoo model does.
    """
    check_trusted(spec, trust_code)
    path, name = split_spec(spec)
    args = dict(args or {})
    module = _run_file(path)
    factory = _lookup(module, name, path)
    registered = _registered_name(factory)
    kwargs = {**({k: v for k, v in offered.items() if k in ZOO_OPTIONS and v is not None} if registered
                 else _accepted(factory, offered, args)), **args}
    try:  # a builder the file registers in the zoo gets the zoo's defaults and checks
        model = create(registered, **kwargs) if registered else factory(**kwargs)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of the user's code is the input's fault
        raise InputError(f"{path}:{name}({_show(kwargs)}) failed: {_where(e, path)}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"{path}:{name} returned {type(model).__name__}, expected a torch.nn.Module")
    model.effai_code = {"spec": f"{path.resolve()}:{name}", "args": kwargs}  # type: ignore[assignment]
    return model


def input_shape_of(model: nn.Module) -> tuple[int, ...] | None:
    """The (C, H, W) a user's class declares with an `input_shape` attribute, else None."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, (tuple, list)) and shape and all(isinstance(d, int) and d > 0 for d in shape):
        return tuple(shape)
    return None


def source_spec(builder) -> str | None:
    """`/abs/file.py:name` of a function or class defined in a file outside effai, else None
    (a reproduce command names it so that a fresh process can load it)."""
    module = getattr(builder, "__module__", "") or ""
    if module.startswith("effai.") or "<" in getattr(builder, "__qualname__", "<"):
        return None
    try:
        file = inspect.getsourcefile(builder)
    except TypeError:
        return None
    if not file or not file.endswith(".py") or not Path(file).is_file():
        return None
    return f"{Path(file).resolve()}:{builder.__qualname__}"


def _run_file(path: Path) -> ModuleType:
    if path.suffix != ".py" or not path.is_file():
        raise InputError(f"{path}: no such Python file")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _MODULES:
        return _MODULES[key]
    mod_name = "effai_user_" + hashlib.sha256(key[0].encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"{path}: not loadable as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # the file may import its neighbours (from blocks import ...)
    sys.modules[mod_name] = module  # dataclasses and typing look the module up while it runs
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's file failed; say where, in one line
        sys.modules.pop(mod_name, None)
        raise InputError(f"{path}: running the file failed: {_where(e, path)}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    _MODULES[key] = module
    return module


def _lookup(module: ModuleType, name: str, path: Path):
    obj: Any = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            found = sorted(n for n, v in vars(module).items()
                           if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__)
            raise InputError(f"{path}: defines no {name!r}; nn.Module classes in it: {', '.join(found) or 'none'}")
    if isinstance(obj, type) and not issubclass(obj, nn.Module):
        raise InputError(f"{path}:{name} is a class but not a torch.nn.Module")
    if not callable(obj):
        raise InputError(f"{path}:{name} is a {type(obj).__name__}, expected an nn.Module class or a function")
    return obj


def _registered_name(factory) -> str | None:
    """The zoo name under which `factory` is registered (the file called `effai.zoo.register`)."""
    return next((n for n in _BUILDERS if _BUILDERS[n] is factory), None)


def _accepted(factory, offered: dict, args: dict) -> dict:
    """The offered options that `factory`'s signature names (by name, not through **kwargs)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in offered.items() if k in ZOO_OPTIONS and k in named and k not in args and v is not None}


def _show(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())[:120]


def _where(e: BaseException, path: Path) -> str:
    """`line N: Type: message` at the deepest frame inside the user's file (one line)."""
    msg = (str(e).strip().splitlines() or [""])[0][:200]
    text = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    if isinstance(e, SyntaxError) and e.lineno and e.filename and Path(e.filename).resolve() == path.resolve():
        return f"line {e.lineno}: SyntaxError: {e.msg}"
    target = str(path.resolve())
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if str(Path(f.filename).resolve()) == target]
    return f"line {lines[-1]}: {text}" if lines else text
