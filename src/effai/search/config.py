"""The search config: one frozen pydantic model, read from YAML with line-numbered errors.

A value in the `space` is fixed (a scalar), a list of choices, or a range
`{low: 0.25, high: 1.0, step: 0.25}` (`log: true` for a log scale).

>>> cfg = SearchConfig(n_trials=4, space={"family": ["lenet5"], "bits": [32, 8, 4]})
>>> cfg.space.bits.choices, cfg.space.family.choices, cfg.objectives
([32, 8, 4], ['lenet5'], ['accuracy', 'size'])
>>> import pydantic
>>> try:
...     SearchConfig(objectives=["accuracy", "speed"])
... except pydantic.ValidationError as e:
...     print(e.errors()[0]["loc"])
('objectives', 1)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from effai.results import parse_bytes

Objective = Literal["accuracy", "size", "macs", "latency", "energy"]
# Direction of each objective for Optuna: accuracy up, every cost down.
DIRECTIONS: dict[str, Literal["maximize", "minimize"]] = {"accuracy": "maximize", "size": "minimize", "macs": "minimize", "latency": "minimize",
              "energy": "minimize"}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dim(_Frozen):
    """One dimension of the space: `choices` (categorical) or a `low`..`high` range."""

    choices: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        if isinstance(v, list):
            return {"choices": v}
        if not isinstance(v, dict):
            return {"choices": [v]}
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.choices is None and (self.low is None or self.high is None):
            raise ValueError("give a list of choices or both low and high")
        if self.choices is not None and (self.low is not None or self.high is not None):
            raise ValueError("give either choices or low/high, not both")
        if self.choices is not None and not self.choices:
            raise ValueError("choices must not be empty")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low={self.low} is above high={self.high}")
        return self

    def values(self) -> list:
        """Every value the dimension can take (the low and high ends for a continuous range)."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]


def _dim_of(kind: type):
    """A validator checking that every value of a Dim has the right type and range."""

    def check(cls, v: Dim):
        for x in v.values():
            if kind is bool and not isinstance(x, bool):
                raise ValueError(f"expected true/false, got {x!r}")
            if kind is float and (isinstance(x, bool) or not isinstance(x, (int, float))):
                raise ValueError(f"expected a number, got {x!r}")
            if kind is int and (isinstance(x, bool) or not isinstance(x, int)):
                raise ValueError(f"expected an integer, got {x!r}")
            if kind is str and not isinstance(x, str):
                raise ValueError(f"expected a name, got {x!r}")
        return v

    return check


class SpaceConfig(_Frozen):
    """What the search may choose. Defaults search width, bits and pruning of lenet5."""

    family: Dim = Dim(choices=["lenet5"])
    width_mult: Dim = Dim(choices=[0.25, 0.5, 0.75, 1.0])
    resolution_mult: Dim = Dim(choices=[1.0])
    prune_ratio: Dim = Dim(choices=[0.0, 0.25, 0.5])
    bits: Dim = Dim(choices=[32, 8, 4])
    per_layer_bits: bool = False  # True: one bit-width per conv/linear layer, drawn from `bits`
    kd: Dim = Dim(choices=[False])
    qat: Dim = Dim(choices=[False])

    _family = field_validator("family")(_dim_of(str))
    _width = field_validator("width_mult", "resolution_mult", "prune_ratio")(_dim_of(float))
    _bits = field_validator("bits")(_dim_of(int))
    _bools = field_validator("kd", "qat")(_dim_of(bool))

    @field_validator("bits")
    @classmethod
    def _bits_known(cls, v: Dim):
        if v.choices is None:
            raise ValueError("bits must be a list of choices, e.g. [32, 8, 4]")
        bad = [b for b in v.choices if b not in (32, 16, 8, 4, 2)]
        if bad:
            raise ValueError(f"bits {bad} not supported; expected some of 32, 16, 8, 4, 2")
        return v

    @field_validator("prune_ratio")
    @classmethod
    def _ratio(cls, v: Dim):
        if any(not 0 <= x < 1 for x in v.values()):
            raise ValueError("prune_ratio values must be in [0, 1)")
        return v

    @field_validator("width_mult", "resolution_mult")
    @classmethod
    def _positive(cls, v: Dim):
        if any(not x > 0 for x in v.values()):
            raise ValueError("multipliers must be > 0")
        return v


class TrainSettings(_Frozen):
    """How each trial trains (and fine-tunes after pruning / for QAT)."""

    epochs: int = 15
    finetune_epochs: int = 3
    lr: float = 3e-3
    batch_size: int = 64
    optimizer: Literal["adamw", "sgd"] = "adamw"
    kd_temperature: float = 4.0
    kd_alpha: float = 0.7


class Budgets(_Frozen):
    """The `constraints:` section: budgets a variant must meet to be feasible; unset ones come
    from `target` when given (`effai.search.objectives.budgets` turns them into the shared
    `effai.results.Constraints`)."""

    max_ram: int | None = None  # bytes of activation memory (peak)
    max_flash: int | None = None  # bytes of stored weights
    max_latency_ms: float | None = None

    @field_validator("max_ram", "max_flash", mode="before")
    @classmethod
    def _bytes(cls, v):
        # An InputError is a ValueError: pydantic reports it with the line.
        return None if v is None else parse_bytes(v, "size")


class SearchConfig(_Frozen):
    """Everything a search needs; the same config (and storage) resumes the same search."""

    dataset: str = "digits"
    seed: int = 0
    n_trials: int = 20
    sampler: Literal["nsga2", "tpe"] = "nsga2"
    population: int = 8  # NSGA-II population size
    study_name: str = "effai-search"
    objectives: list[Objective] = ["accuracy", "size"]
    accuracy_on: Literal["val", "test"] = "val"  # which split the search optimises
    space: SpaceConfig = SpaceConfig()
    train: TrainSettings = TrainSettings()
    target: str | None = None  # hardware target: latency/energy estimates and default budgets
    latency: Literal["measured", "estimated"] = "measured"
    constraints: Budgets = Budgets()
    threads_per_trial: int = 1
    # Variants to try first (Optuna's enqueue_trial), e.g. the uncompressed base as an anchor:
    # [{family: lenet5, width_mult: 1.0, bits: 32}]; unset dimensions are sampled.
    initial: list[dict[str, Any]] = []
    max_failures: int | None = None  # stop after this many failed trials (None: n_trials)
    # How and where to run; the CLI's options override these.
    backend: Literal["local", "ray"] = "local"
    workers: int = 1
    storage: str | None = None  # default sqlite:///OUT/search.db
    ray_address: str | None = None
    out: str = "runs/search"
    # A family may be the user's own path/to/file.py:ClassName, built with `model_args`; loading
    # the file runs it, so the search refuses it unless trust_code is set (the CLI's --trust-code).
    model_args: dict[str, Any] = {}
    trust_code: bool = False

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v):
        if "accuracy" not in v:
            raise ValueError("objectives must include accuracy")
        if len(set(v)) != len(v):
            raise ValueError("objectives must not repeat")
        return ["accuracy"] + [o for o in v if o != "accuracy"]

    @field_validator("n_trials", "workers", "threads_per_trial", "population")
    @classmethod
    def _at_least_one(cls, v):
        if v < 1:
            raise ValueError("expected an integer >= 1")
        return v

    @field_validator("initial")
    @classmethod
    def _initial(cls, v):
        known = set(SpaceConfig.model_fields) - {"per_layer_bits"}
        for i, d in enumerate(v):
            bad = sorted(set(d) - known)
            if bad:
                raise ValueError(f"initial[{i}]: unknown dimension(s) {bad}; expected some of {sorted(known)}")
        return v

    @model_validator(mode="after")
    def _initial_in_space(self):
        for i, d in enumerate(self.initial):
            for k, x in d.items():
                dim = getattr(self.space, k)
                try:
                    inside = x in dim.choices if dim.choices is not None else dim.low <= x <= dim.high
                except TypeError:
                    inside = False
                if not inside:
                    raise ValueError(f"initial[{i}].{k}={x!r} is outside the space ({dim.values()})")
        return self

    @model_validator(mode="after")
    def _latency_needs_target(self):
        if self.latency == "estimated" and self.target is None:
            raise ValueError("latency: estimated needs a hardware target")
        return self

    def storage_url(self) -> str:
        """The Optuna storage URL (SQLite in the output folder by default)."""
        import os

        return self.storage or f"sqlite:///{os.path.abspath(os.path.join(self.out, 'search.db'))}"

    def fingerprint(self) -> str:
        """Hash of what defines the trials (not how they run), to refuse resuming a different search."""
        what = self.model_dump(exclude={"backend", "workers", "storage", "ray_address", "out", "n_trials",
                                        "max_failures", "trust_code"})
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_config(path, **overrides) -> SearchConfig:
    """Read a search YAML file; `overrides` (non-None CLI options) replace its values.

    Errors name the file, the line and the field (see `effai.config.load_yaml_model`).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "search.yaml"
    >>> _ = p.write_text("n_trials: 5\\nspace:\\n  bits: [8, 4]\\n")
    >>> cfg = load_config(p, workers=2, backend=None)
    >>> cfg.n_trials, cfg.workers, cfg.backend, cfg.space.bits.choices
    (5, 2, 'local', [8, 4])
    """
    import pydantic

    from effai.config import load_yaml_model
    from effai.errors import InputError

    cfg = load_yaml_model(path, SearchConfig)
    extra = {k: v for k, v in overrides.items() if v is not None}
    if not extra:
        return cfg
    try:
        return SearchConfig.model_validate({**cfg.model_dump(), **extra})
    except pydantic.ValidationError as e:
        err = e.errors(include_url=False)[0]
        opt = "--" + str(err["loc"][0]).replace("_", "-")
        raise InputError(f"{opt} {err.get('input')!r}: {err['msg']}") from None
