"""The run folder: `study.json` (the study's identity), `results.jsonl` (one line per
finished variant: `{"schema", "study_key", "record"}` with an `effai.results.VariantRecord`,
appended and fsynced), `base/` (the trained base model), `variants/NAME/` (each variant's file and
manifest, study.artifacts), `best/` (the winner's), and a lock.

Rerunning the same command reuses finished variants, so an interrupted study resumes where it
stopped. A folder holding a different study is refused unless `force`; two processes cannot
write the same folder at once (an OS file lock, released even if the holder is killed).
"""

from __future__ import annotations

import os
import shutil
from contextlib import AbstractContextManager
from pathlib import Path

from effai.errors import InputError
from effai.fileio import append_jsonl, folder_lock, read_jsonl, write_json
from effai.results import VariantRecord
from effai.results.serial import unversioned, versioned


class RunDir:
    def __init__(self, path: str | os.PathLike, identity: dict, key: str, force: bool = False):
        self.path = Path(path)
        self.identity, self.key, self.force = identity, key, force
        self._lock: AbstractContextManager | None = None

    @property
    def results(self) -> Path:
        return self.path / "results.jsonl"

    @property
    def base_dir(self) -> Path:
        return self.path / "base"

    def __enter__(self) -> RunDir:
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"--out {self.path}: exists and is not a folder")
        lock = folder_lock(self.path, "study")
        lock.__enter__()
        self._lock = lock
        try:
            self._check_identity()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def _check_identity(self) -> None:
        import json

        cfg_path = self.path / "study.json"
        if cfg_path.exists():
            try:
                old = json.loads(cfg_path.read_text(encoding="utf-8")).get("identity")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                old = None
            if old != self.identity:
                if not self.force:
                    diff = _diff(old, self.identity)
                    raise InputError(f"--out {self.path}: holds a different study ({diff}); "
                                     "choose another --out, or pass --force to start over there")
                self._wipe()
        elif self.results.exists() and not self.force:
            raise InputError(f"--out {self.path}: holds results.jsonl but no study.json; pass --force to start over")
        elif self.force:
            self._wipe()
        write_json(cfg_path, {"identity": self.identity, "key": self.key})

    def _wipe(self) -> None:
        self.results.unlink(missing_ok=True)
        for folder in (self.base_dir, self.path / "variants", self.path / "best"):
            shutil.rmtree(folder, ignore_errors=True)
        for name in ("study.json", "result.json", "report.html", "report.md"):
            (self.path / name).unlink(missing_ok=True)

    def finished(self) -> dict[str, VariantRecord]:
        """The last finished ("ok") record of each variant of this study. A file of another
        effai schema, or a line that is not a record, is refused whole (InputError)."""
        done = {}
        for i, line in enumerate(read_jsonl(self.results), 1):
            where = f"{self.results} line {i}"
            d = unversioned(line, where, f"; delete {self.results.name} or choose another --out to start over")
            if not isinstance(d.get("record"), dict) or set(d) != {"study_key", "record"}:
                raise InputError(f"{where}: expected {{schema, study_key, record}}, got keys {sorted(d)}")
            rec = VariantRecord.from_dict(d["record"], where)
            if d["study_key"] == self.key and rec.ok:
                done[rec.name] = rec
        return done

    def append(self, record: VariantRecord) -> None:
        # A run killed mid-write leaves a torn last line (an unfinished record): cut it off
        # first, so the new record starts on its own line and the file stays valid JSONL.
        if self.results.exists() and self.results.stat().st_size:
            raw = self.results.read_bytes()
            if not raw.endswith(b"\n"):
                with open(self.results, "r+b") as f:
                    f.truncate(raw.rfind(b"\n") + 1)
        append_jsonl(self.results, versioned({"study_key": self.key, "record": record.to_dict()}))


def _diff(old: dict | None, new: dict) -> str:
    if not isinstance(old, dict):
        return "its study.json is unreadable"
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys[:3])
