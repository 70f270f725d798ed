"""Safe reading and atomic writing: the I/O rules every capability follows.

- Results are written to a temporary file in the same folder and renamed into place,
  so a crash mid-write never leaves a half-written file.
- Long runs append one JSON object per line and fsync, so a killed run loses at most
  the record it was writing; `read_jsonl` skips a torn last line.
- Model files are loaded with `torch.load(weights_only=True)`: a pickle that tries to
  run code is refused, and its payload never runs, unless the user trusts it explicitly.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from effai.errors import InputError


def ensure_dir(path: str | os.PathLike, what: str = "") -> Path:
    """Create folder `path` (and its parents), or raise an InputError naming what blocks it:
    a file where a folder must be, no permission, a read-only file system.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "a_file")
    >>> _ = open(f, "w").write("x")
    >>> try:
    ...     ensure_dir(os.path.join(f, "out"), "--out ")
    ... except InputError as e:
    ...     print(str(e).replace(os.path.dirname(f), "DIR"))
    --out DIR/a_file/out: cannot create the output folder (DIR/a_file is a file, not a folder)
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None else (e.strerror or type(e).__name__)
        raise InputError(f"{what}{path}: cannot create the output folder ({why})") from None
    return path


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    ensure_dir(path.parent)
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except (PermissionError, IsADirectoryError) as e:
        raise InputError(f"{path.parent}: cannot write in this folder ({e.strerror})") from None
    except OSError as e:
        if e.errno != 30:  # EROFS: a read-only file system is the user's choice of folder
            raise
        raise InputError(f"{path.parent}: cannot write in this folder ({e.strerror})") from None
    try:
        # Text may hold lone surrogates (non-UTF-8 file names decoded by os.fsdecode): write
        # them as visible escapes rather than failing after the run's work is done.
        text_opts: dict = {"encoding": "utf-8", "errors": "backslashreplace"}
        with os.fdopen(fd, mode, **({} if mode == "wb" else text_opts)) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask is a set)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON."""
    return write_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record as a JSON line and fsync it, so it survives a kill right after."""
    path = Path(path)
    ensure_dir(path.parent)
    line = json.dumps(record, default=_json_default) + "\n"
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Records of a JSONL file; a torn (unterminated, unparsable) last line is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i >= len(lines) - 2:  # the last line, torn by a kill mid-write
                continue
            raise InputError(f"{path}: line {i + 1} is not valid JSON ({e.msg})") from None
    return records


def _json_default(o: Any):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_torch_file(path: str | os.PathLike, trust_pickle: bool = False) -> Any:
    """Load a `.pt` file safely.

    With `weights_only=True` torch refuses any pickle that would construct arbitrary
    objects, so a payload never runs. Such a file is reported as an InputError unless
    `trust_pickle` is set (the user vouches for the file's origin).
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        first = str(e).strip().splitlines()
        detail = next((ln for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else "")
        raise InputError(
            f"{path}: refused to unpickle: the file needs arbitrary code to load ({detail.strip()[:160]}); "
            "pass --trust-pickle only if you trust its origin"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a readable PyTorch file (truncated or corrupt: {msg[:160]})") from None
