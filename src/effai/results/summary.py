"""The result of a comparison of variants (a study, or a search shown as one): what the reports
render and `result.json` holds.

>>> from effai.results.records import VariantRecord
>>> r = StudyResult(name="demo", base=BaseModelInfo(name="lenet5", source="trained", test_accuracy=0.99),
...                 variants=(VariantRecord("fp32", accuracy=0.99),))
>>> StudyResult.from_dict(r.to_dict()) == r, r.best
(True, None)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effai.errors import InputError
from effai.results.pareto import Constraints, Selection
from effai.results.records import VariantRecord
from effai.results.serial import Record, unversioned, versioned


@dataclass(frozen=True)
class BaseModelInfo(Record):
    """The model every variant is compared with: where it came from and how good it is."""

    name: str  # zoo name, checkpoint folder, or what a search sampled
    arch: str | None = None  # zoo architecture name, when it has one (students and variants are built from it)
    source: str = ""  # "trained" | "cached" | the path it was loaded from
    epochs: int | None = None
    train_seconds: float | None = None
    test_accuracy: float | None = None

    def describe(self) -> str:
        """One sentence for the report.

        >>> BaseModelInfo("lenet5", source="trained", epochs=3, train_seconds=12.4, test_accuracy=0.981).describe()
        'base model lenet5: trained here for 3 epochs (12 s), test accuracy 98.10%'
        """
        if self.source == "trained":
            how = f"trained here for {self.epochs} epochs ({self.train_seconds or 0:.0f} s)"
        elif self.source == "cached":
            how = "reused from the run folder"
        else:
            how = f"loaded from {self.source}" if self.source else "given"
        acc = f", test accuracy {self.test_accuracy:.2%}" if self.test_accuracy is not None else ""
        return f"base model {self.name}: {how}{acc}"


@dataclass(frozen=True)
class DatasetInfo(Record):
    name: str
    class_names: tuple[str, ...] = ()
    n_test: int = 0
    input_shape: tuple[int, ...] = ()
    slices: str = ""  # where the subgroup labels came from

    @property
    def examples(self) -> str:
        """What one test example is, for the reports: token sequences have a shape (L,).

        >>> DatasetInfo("keywords", input_shape=(32,)).examples, DatasetInfo("digits", input_shape=(1, 8, 8)).examples
        ('sequences', 'images')
        """
        return "sequences" if len(self.input_shape) == 1 else "images"


@dataclass(frozen=True)
class Environment(Record):
    python: str = ""
    torch: str = ""
    platform: str = ""
    processor: str = ""
    torch_threads: int | None = None
    cpu_model: str = ""  # /proc/cpuinfo's model name
    onnxruntime: str = ""  # version ("" where not installed)
    openvino: str = ""
    cores: int | None = None


@dataclass(frozen=True)
class StudyResult(Record):
    """Every variant's record, the Pareto fronts, the selection and how to reproduce it."""

    name: str
    base: BaseModelInfo
    dataset: DatasetInfo = field(default_factory=lambda: DatasetInfo("?"))
    variants: tuple[VariantRecord, ...] = ()
    reference: str | None = "fp32"  # the variant harm and the report's Δ are measured against
    pareto: dict[str, tuple[str, ...]] = field(default_factory=dict)  # axis -> names on its front
    constraints: Constraints = field(default_factory=Constraints)
    selection: Selection = field(default_factory=lambda: Selection(None, "no selection was made"))
    config: dict[str, Any] = field(default_factory=dict)  # the settings as given, to reproduce the run
    command: str = ""
    environment: Environment = field(default_factory=Environment)
    out_dir: str = ""
    notes: tuple[str, ...] = ()
    latency_note: str = "see each cell's tooltip for the runtime"
    energy_note: str = "measured or estimated as each cell's tooltip says"
    fit_note: str = "Memory fit against each target's flash and RAM; hover a cell for details."
    seconds: float = 0.0
    best_dir: str = ""  # the winner's file and manifest, copied ("" when nothing was chosen)
    reproduce: str = ""  # the one command that builds the winner again

    @property
    def best(self) -> VariantRecord | None:
        return self.variant(self.selection.best) if self.selection.best else None

    def variant(self, name: str) -> VariantRecord | None:
        return next((r for r in self.variants if r.name == name), None)

    def save(self, path: str | os.PathLike) -> Path:
        """Write `result.json` (atomically, with the schema version)."""
        from effai.fileio import write_json

        return write_json(path, versioned(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> StudyResult:
        """Read a `result.json`; an InputError in one line if it is not one this effai can read.

        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "result.json"
        >>> _ = p.write_text('{"name": "old", "variants": []}')
        >>> try:
        ...     StudyResult.load(p)
        ... except InputError as e:
        ...     print(str(e).split(": ", 1)[1])
        no schema version: written by effai before results schema 1, or not by effai
        """
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{p}: cannot read a result ({type(e).__name__})") from None
        return cls.from_dict(unversioned(d, str(p)), str(p))
