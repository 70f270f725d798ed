"""`StudyConfig`: what to study, validated once at the boundary (scikit-learn style)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from effai.errors import InputError
from effai.results import Constraints, parse_bytes, parse_ms


@dataclass(frozen=True)
class StudyConfig:
    """One study: a base model, a data set, the variants to build and the constraints to meet.

    `model` is a zoo name or the user's own `path/to/file.py:ClassName` (built with
    `model_args`; running the file needs `trust_code=True`), trained here once and cached in the
    run folder; or a checkpoint folder written by `effai train`, or a state dict with `arch`
    (a zoo name or a `file.py:ClassName`). `variants=None` builds every registered variant (in
    `quick` mode, the quick subset). `max_size` / `max_latency` accept "250KB" / "5ms" or
    numbers (bytes / milliseconds). `target` is a hardware target the chosen variant must fit.

    >>> cfg = StudyConfig(max_size="250KB", max_latency="5ms", quick=True)
    >>> cfg.constraints().max_size_bytes, cfg.constraints().max_latency_ms
    (250000, 5.0)
    >>> StudyConfig(min_accuracy=2)
    Traceback (most recent call last):
    effai.errors.InputError: min_accuracy=2: expected a fraction in (0, 1] (e.g. 0.97)
    """

    dataset: str = "mnist5k"
    model: str = "lenet5"
    variants: tuple[str, ...] | None = None
    quick: bool = False
    max_size: str | int | None = None
    max_latency: str | float | None = None
    min_accuracy: float | None = None
    target: str | None = None
    out: str | None = None  # run folder; default runs/<name>
    name: str | None = None  # default: the out folder's name, else "<model>-<dataset>"
    seed: int = 0
    epochs: int | None = None  # base training epochs (default 12, quick 3)
    slices: str | None = None  # a text file with one subgroup label per test example
    force: bool = False  # start over in a folder holding a different study
    threads: int = 1  # latency is measured single-threaded unless asked
    arch: str | None = None  # the architecture of a bare state dict `model`
    model_args: dict | None = None  # keyword arguments of a user's file.py:ClassName
    trust_code: bool = False  # let a .py model (or a pickle / TorchScript file) run its code
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.variants is not None:
            vs = tuple(v.strip() for v in self.variants if v.strip())
            if not vs:
                raise InputError("variants: give at least one variant name")
            object.__setattr__(self, "variants", vs)
        if self.min_accuracy is not None and not 0 < self.min_accuracy <= 1:
            raise InputError(f"min_accuracy={self.min_accuracy}: expected a fraction in (0, 1] (e.g. 0.97)")
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"epochs={self.epochs}: expected >= 1")
        if self.threads < 1:
            raise InputError(f"threads={self.threads}: expected >= 1")
        from effai.zoo import usercode

        for spec in (self.model, self.arch):
            if usercode.is_code_spec(spec):
                usercode.split_spec(spec)
                usercode.check_trusted(spec, self.trust_code)  # refused before anything runs
        if self.model_args and not (usercode.is_code_spec(self.model) or usercode.is_code_spec(self.arch)):
            raise InputError(f"model_args: keyword arguments of a user's model (path/to/file.py:ClassName); "
                             f"{self.model} is not one")
        if self.target is not None:  # an alias ("jetson") is recorded as the device it names
            from effai.hardware import load_catalogue

            object.__setattr__(self, "target", load_catalogue().canonical(self.target))
        self.constraints()  # parse sizes and latencies now, so bad values fail before any work

    def constraints(self) -> Constraints:
        return Constraints(
            max_size_bytes=None if self.max_size is None else parse_bytes(self.max_size, "max_size"),
            max_latency_ms=None if self.max_latency is None else parse_ms(self.max_latency, "max_latency"),
            min_accuracy=self.min_accuracy,
            target=self.target,
        )

    @property
    def base_epochs(self) -> int:
        return self.epochs or (3 if self.quick else 12)

    def identity(self) -> dict:
        """The settings that change what a variant's record holds. Two runs with the same
        identity can share finished variants; constraints and the variant list do not count
        (selection is recomputed, missing variants are built)."""
        from effai.zoo import usercode

        ident = {"dataset": self.dataset, "model": self.model, "quick": self.quick, "seed": self.seed,
                 "epochs": self.base_epochs, "slices": self.slices, "threads": self.threads}
        if self.arch or self.model_args:
            ident.update(arch=self.arch, model_args=self.model_args)
        code = next((s for s in (self.model, self.arch) if usercode.is_code_spec(s)), None)
        if code:  # an edited file is a different study
            ident["code_sha256"] = usercode.fingerprint(code)
        return ident

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["variants"] = list(self.variants) if self.variants else None
        return d
