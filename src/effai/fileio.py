"""Safe reading and atomic writing: the I/O rules every capability follows.

- Results are written to a temporary file in the same folder and renamed into place,
  so a crash mid-write never leaves a half-written file.
- Long runs append one JSON object per line and fsync, so a killed run loses at most
  the record it was writing; `read_jsonl` skips a torn last line.
- Model files are loaded with `torch.load(weights_only=True)`: a pickle that tries to
  run code is refused, and its payload never runs, unless the user trusts it explicitly.
"""

from __future__ import annotations

import errno
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
        dangling = next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None)
        if dangling is not None:
            raise InputError(f"{what}{path}: cannot create the output folder ({dangling} is a symbolic link to "
                             f"{os.readlink(dangling)!r}, which does not exist)") from None
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None else (e.strerror or type(e).__name__)
        raise InputError(f"{what}{path}: cannot create the output folder ({why})") from None
    return path


def cache_dir() -> Path:
    """Where effai caches what it computes once per machine (host calibrations, synthesised
    data sets): `$EFFAI_CACHE_DIR`, else `$XDG_CACHE_HOME/effai`, else `~/.cache/effai`."""
    if os.environ.get("EFFAI_CACHE_DIR"):
        return Path(os.environ["EFFAI_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "effai"


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename).

    Only a regular file (or a path that does not exist yet) is replaced: a device or FIFO
    (`--csv /dev/null`) is written to in place, so it stays what it is; a folder, a dangling
    symlink or a full disk is an InputError, and nothing half-written is left behind. A
    symlink to a file is followed: the file it points to is replaced, the link kept.
    """
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    # Text may hold lone surrogates (non-UTF-8 file names decoded by os.fsdecode): write
    # them as visible escapes rather than failing after the run's work is done.
    opts: dict = {} if mode == "wb" else {"encoding": "utf-8", "errors": "backslashreplace"}
    target = _write_target(path)
    if target is None:  # a device or FIFO: write through it
        try:
            with open(path, mode, **opts) as f:
                f.write(data)
        except OSError as e:
            raise _write_error(path, e) from None
        return path
    ensure_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        raise _write_error(target.parent, e, "cannot write in this folder") from None
    try:
        with os.fdopen(fd, mode, **opts) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise
    return path


def _write_target(path: Path) -> Path | None:
    """The regular file to replace for `path` (symlinks followed), or None for a device or FIFO."""
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise InputError(f"{path}: is a symbolic link to {os.readlink(path)!r}, which does not exist; "
                             "remove the link or name another file") from None
        return path
    except OSError as e:
        raise _write_error(path, e) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a folder; name a file to write")
    if stat.S_ISREG(st.st_mode):
        return Path(os.path.realpath(path))
    return None


_WRITE_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "operation not permitted", errno.EFBIG: "file too large for this file system "
                 "or limit", errno.EISDIR: "is a folder", errno.ENOTDIR: "a parent is not a folder",
                 errno.EIO: "input/output error", errno.ENAMETOOLONG: "file name too long"}


def _write_error(path: Path, e: OSError, what: str = "cannot write") -> InputError:
    """One line for an OSError met while writing: the path and the cause (ENOSPC, EROFS, ...)."""
    why = _WRITE_ERRORS.get(e.errno or 0, e.strerror or type(e).__name__)
    return InputError(f"{path}: {what} ({why}); nothing was written there")


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


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex (read in 1 MiB chunks).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "f"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON."""
    return write_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record as a JSON line and fsync it, so it survives a kill right after."""
    path = Path(path)
    ensure_dir(path.parent)
    line = json.dumps(record, default=_json_default) + "\n"
    try:
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _write_error(path, e, "cannot append a record") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Records (JSON objects) of a JSONL file; a torn (unterminated, unparsable) last line is
    ignored; any other line that is not an object is an InputError naming its number."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i >= len(lines) - 2:  # the last line, torn by a kill mid-write
                continue
            raise InputError(f"{path}: line {i + 1} is not valid JSON ({e.msg})") from None
        except RecursionError:
            raise InputError(f"{path}: line {i + 1} is nested too deeply to be a record") from None
        if not isinstance(rec, dict):
            raise InputError(f"{path}: line {i + 1} is a JSON {type(rec).__name__}, expected an object (a record)")
        records.append(rec)
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
    `trust_pickle` is set (the user vouches for the file's origin). A zip whose members
    would inflate far beyond the file's size is refused before torch reads it.
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
    check_zip_inflation(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if trust_pickle:
            return _load_trusted_pickle(path)
        raise InputError(f"{path}: refused to unpickle: {_unpickle_refusal(str(e))}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, MemoryError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a readable PyTorch file (truncated or corrupt: {msg[:160]})") from None


def _load_trusted_pickle(path: Path) -> Any:
    """A full unpickle (the user trusts the file); what it cannot rebuild is one line, not a traceback."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as e:  # the class's module (or the class) is not importable here
        raise InputError(f"{path}: the pickled object needs code that is not importable here ({e}); run effai "
                         "where that module imports (e.g. PYTHONPATH=the folder of your code), or save "
                         "model.state_dict() and load it with --arch path/to/file.py:ClassName --trust-code") from None
    except Exception as e:  # noqa: BLE001 - the user's pickle ran and failed: say so in one line
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise InputError(f"{path}: unpickling failed ({type(e).__name__}: {msg})") from None


def _unpickle_refusal(torch_message: str) -> str:
    """What to do about a pickle that weights_only refused (not torch's add_safe_globals hint).

    >>> _unpickle_refusal("... Unsupported global: GLOBAL effai.zoo.lenet.LeNet5 was not an allowed global ...")
    'the file needs code to load (it names effai.zoo.lenet.LeNet5): if it is a whole model saved with torch.save(model), save model.state_dict() instead and load it with --arch NAME (a zoo name, or path/to/file.py:ClassName with --trust-code); or pass --trust-pickle only if you trust its origin'
    """
    import re

    m = re.search(r"GLOBAL ([\w.]+)", torch_message)
    named = f" (it names {m.group(1)})" if m else ""
    return (f"the file needs code to load{named}: if it is a whole model saved with torch.save(model), save "
            "model.state_dict() instead and load it with --arch NAME (a zoo name, or path/to/file.py:ClassName with "
            "--trust-code); or pass --trust-pickle only if you trust its origin")


def check_zip_inflation(path: Path) -> None:
    """Refuse a zip (.pt, .npz) whose members declare far more bytes than the file holds."""
    import zipfile

    from effai.limits import check_inflation

    try:
        with zipfile.ZipFile(path) as z:
            declared = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip (or a broken one): the reader reports it
    check_inflation(declared, path.stat().st_size, str(path))


def folder_lock(folder: str | os.PathLike, what: str):
    """Hold an exclusive lock on `folder` (file `.lock` in it) while a run of `what` writes there.

    A second run on the same folder fails at once with one line instead of racing the first
    (two searches creating the same SQLite tables). The lock is the kernel's (flock): it
    goes with the process, so a killed run never leaves a stale lock behind.
    """
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def held():
        lock = ensure_dir(folder, "--out ") / ".lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise _write_error(lock, e, "cannot create the lock file") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise InputError(f"--out {folder}: another {what} ({holder}) is writing this folder; wait for it "
                                 "or choose another --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            yield
        finally:
            os.close(fd)

    return held()
