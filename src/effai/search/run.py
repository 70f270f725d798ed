"""The search driver: Optuna ask-and-tell over RDB storage, trials farmed out to a backend.

Only this process writes the storage (SQLite by default): it asks the sampler for a variant,
hands the variant to a worker, and tells the result when it comes back. Every finished trial is
committed when it is told, so a search killed at any moment resumes from its storage:

- trials left RUNNING by a killed driver are marked FAIL (with `interrupted` in their user
  attributes) and their parameters queued again, so each is retried once;
- `n_trials` counts COMPLETE trials, so none is lost and none is counted twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from effai.errors import InputError
from effai.fileio import folder_lock
from effai.results import Constraints, Record, VariantRecord, margins, violations
from effai.results.serial import versioned
from effai.search.config import DIRECTIONS, SearchConfig
from effai.search.objectives import budgets, objective, search_front
from effai.search.space import start_params, suggest


@dataclasses.dataclass(frozen=True)
class TrialRecord(Record):
    """One finished trial: what was sampled, its variant's record, and whether it met the budgets."""

    number: int
    variant: dict[str, Any]  # the sampled point of the space
    record: VariantRecord
    values: dict[str, float]  # objective -> value told to Optuna
    feasible: bool
    violations: tuple[str, ...] = ()
    same_as: int | None = None  # a repeat of this earlier trial's variant (measurement reused)

    @property
    def name(self) -> str:
        return self.record.name


@dataclasses.dataclass
class SearchResult:
    """The finished search: every COMPLETE trial, the feasible Pareto front, and where files went."""

    config: SearchConfig
    objectives: list[str]
    trials: list[TrialRecord]
    front: list[TrialRecord]
    n_failed: int
    n_retried: int
    storage: str
    out: Path

    def to_dict(self) -> dict:
        return versioned({
            "study_name": self.config.study_name,
            "storage": self.storage,
            "objectives": self.objectives,
            "directions": [DIRECTIONS[o] for o in self.objectives],
            "n_complete": len(self.trials),
            "n_failed": self.n_failed,
            "n_retried": self.n_retried,
            "budgets": budgets(self.config).to_dict(),
            "front": [t.to_dict() for t in self.front],
            "trials": [t.to_dict() for t in self.trials],
            "config": self.config.model_dump(),
        })


# ---------------------------------------------------------------- the driver
def _sampler(cfg: SearchConfig):
    import optuna

    if cfg.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True,
                                          n_startup_trials=min(10, cfg.population))
    return optuna.samplers.NSGAIISampler(seed=cfg.seed, population_size=cfg.population)


def open_study(cfg: SearchConfig):
    """Create or load the Optuna study in the config's storage; refuse one from a different config."""
    import optuna

    url = cfg.storage_url()
    sqlite_file = url[len("sqlite:///"):] if url.startswith("sqlite:///") and ":memory:" not in url else None
    try:
        if sqlite_file:
            # WAL journal + synchronous=NORMAL: a commit is one append to the WAL, without an fsync
            # per transaction, and still survives a killed process (not a power cut); ~20 commits a trial.
            import sqlite3

            Path(sqlite_file).parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(sqlite_file) as con:
                con.execute("PRAGMA journal_mode=WAL")
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}
                                             if url.startswith("sqlite") else None)
        if sqlite_file:
            from sqlalchemy import event

            event.listen(storage.engine, "connect", lambda con, _: con.execute("PRAGMA synchronous=NORMAL"))
            storage.engine.dispose()  # reconnect with the pragma
    except Exception as e:
        raise InputError(f"--storage {url}: cannot open ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    study = optuna.create_study(storage=storage, study_name=cfg.study_name, load_if_exists=True,
                                directions=[DIRECTIONS[o] for o in cfg.objectives], sampler=_sampler(cfg))
    have = study.user_attrs.get("effai_fingerprint")
    if have is None:
        study.set_user_attr("effai_fingerprint", cfg.fingerprint())
        study.set_user_attr("objectives", list(cfg.objectives))
    elif have != cfg.fingerprint():
        raise InputError(f"{url}: study {cfg.study_name!r} was made with a different search config "
                         "(space, objectives, data or training); use a new --storage or study_name")
    return study


def recover_interrupted(study) -> int:
    """Mark trials a killed driver left RUNNING as FAIL and queue their parameters again; returns how many.

    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> s = optuna.create_study()
    >>> _ = s.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # left RUNNING, as by a kill
    >>> recover_interrupted(s), [t.state.name for t in s.get_trials()]
    (1, ['FAIL', 'WAITING'])
    """
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    storage = study._storage
    for t in stale:
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(stale)


def _record(t, where: str) -> TrialRecord:
    ua = t.user_attrs
    if "record" not in ua:
        raise InputError(f"{where}: trial {t.number} was written by an effai before results schema 1 (no record); "
                         "use a new --storage or study_name")
    return TrialRecord(number=t.number, variant=ua.get("variant", {}),
                       record=VariantRecord.from_dict(ua["record"], f"{where}: trial {t.number}"),
                       values=dict(zip(ua.get("objectives", []), t.values or [], strict=False)),
                       feasible=not ua.get("violations"), violations=tuple(ua.get("violations", [])),
                       same_as=ua.get("same_as"))


def run(cfg: SearchConfig, progress: Callable[[int, int, str], None] | None = None, write: bool = True) -> SearchResult:
    """Run (or resume) the search `cfg` describes until `n_trials` trials are COMPLETE.

    `progress(done, total, message)` is called after each finished trial. With `write`,
    `OUT/pareto.json` and `OUT/report.html` are written at the end.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    out = Path(cfg.out)
    with folder_lock(out, "search"):  # one search per folder (the second would race on the storage)
        return _run(cfg, out, progress, write)


def _run(cfg: SearchConfig, out: Path, progress, write: bool) -> SearchResult:  # noqa: C901 - the search driver loop (resume, backends, budget); split with the records rework
    from optuna.trial import TrialState

    from effai.search.backends import make_backend
    from effai.search.trial import describe

    _check_inputs(cfg)
    study = open_study(cfg)
    if cfg.initial and not study.get_trials(deepcopy=False):  # a fresh study: queue the start points
        for params in cfg.initial:
            study.enqueue_trial(start_params(params, cfg.space))
    retried = recover_interrupted(study)
    limits = budgets(cfg)
    max_fail = cfg.max_failures if cfg.max_failures is not None else cfg.n_trials

    def check_failures(msg: str, failed: int) -> int:
        """1 if `msg` reports a failed trial (0 if not); stop the search after too many."""
        if not msg.startswith("failed"):
            return 0
        if failed + 1 > max_fail:
            raise InputError(f"search stopped: {failed + 1} trials failed; last: {msg}")
        return 1

    def n_complete() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    done, failed_now = n_complete(), 0
    if progress:
        progress(done, cfg.n_trials, f"resumed: {done} complete" if done else "starting")
    backend = make_backend(cfg) if done < cfg.n_trials else None
    pending: dict[int, tuple] = {}  # handle -> (optuna trial, variant)
    measured = _measured(study)
    try:
        while done < cfg.n_trials or pending:
            while backend and len(pending) < cfg.workers and done + len(pending) < cfg.n_trials:
                trial = study.ask()
                variant = suggest(trial, cfg.space)
                trial.set_user_attr("variant", variant)
                trial.set_user_attr("name", describe(variant))
                key = json.dumps(variant, sort_keys=True)
                if key in measured:  # seeded training: the same variant measures the same; reuse it
                    trial.set_user_attr("same_as", measured[key][0])
                    msg = _finish(study, trial, measured[key][1], cfg, limits)
                    failed = check_failures(msg, failed_now)
                    failed_now, done = failed_now + failed, done + 1 - failed
                    if progress:
                        progress(done, cfg.n_trials, msg + " (repeat, reused)")
                    continue
                pending[backend.submit(variant)] = (trial, variant)
            if not pending:
                break
            assert backend is not None  # pending trials were submitted to it
            for h, res in backend.wait(list(pending)):
                trial, variant = pending.pop(h)
                msg = _finish(study, trial, res, cfg, limits)
                measured[json.dumps(variant, sort_keys=True)] = (trial.number, res)
                failed = check_failures(msg, failed_now)
                failed_now, done = failed_now + failed, done + 1 - failed
                if progress:
                    progress(done, cfg.n_trials, msg)
    finally:
        if backend:
            backend.close()

    trials = [_record(t, cfg.storage_url()) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    n_failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    result = SearchResult(cfg, list(cfg.objectives), trials, search_front(trials, cfg), n_failed, retried,
                          cfg.storage_url(), out)
    if write:
        write_outputs(result)
    return result


def _measured(study) -> dict[str, tuple[int, dict]]:
    """variant -> (trial number, worker result) of every trial measured so far, failures included.
    A trial interrupted between storing its record and being told holds a record but is FAIL
    (not a result): it is measured again."""
    from optuna.trial import TrialState

    out = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        ua = t.user_attrs
        if t.state == TrialState.COMPLETE and "record" in ua:
            res = {"ok": True, "record": ua["record"]}
        elif t.state == TrialState.FAIL and "error" in ua:
            res = {"ok": False, "error": ua["error"]}
        else:
            continue
        if "variant" in ua:
            out[json.dumps(ua["variant"], sort_keys=True)] = (t.number, res)
    return out


def _check_inputs(cfg: SearchConfig) -> None:
    """Fail before any trial on what would fail every trial: unknown families (a user's .py family
    untrusted, failing to build, or without the width_mult the space varies), unreadable data."""
    from effai import zoo
    from effai.search.trial import build_family, dataset
    from effai.zoo import usercode
    from effai.zoo.loading import check_compatible

    ds = dataset(cfg.dataset, cfg.seed)  # InputError naming the data set; cached for in-process trials
    widths = set(cfg.space.width_mult.values())
    for family in cfg.space.family.values():
        if not usercode.is_code_spec(family):
            zoo.info(family)  # InputError with the closest names
            continue
        if cfg.space.per_layer_bits:
            raise InputError(f"space.family {family}: per_layer_bits needs a zoo family (its layer names are "
                             "read without running code); use one bit-width for the whole model")
        model = build_family(family, cfg, ds, width_mult=1.0, resolution=ds.input_shape[-1])
        check_compatible(model, ds, family)
        code: dict[str, Any] = model.effai_code  # type: ignore[assignment]  # set by usercode on .py models
        if widths != {1.0} and "width_mult" not in code["args"]:
            raise InputError(f"space.family {family}: its class takes no width_mult, but space.width_mult varies "
                             f"({sorted(widths)}); set width_mult: [1.0] or add a width_mult argument")


def _finish(study, trial, res: dict, cfg: SearchConfig, limits: Constraints) -> str:
    """Tell the study how a trial ended; returns a one-line progress message."""
    from optuna.trial import TrialState

    name = trial.user_attrs.get("name", "")
    if not res.get("ok"):
        trial.set_user_attr("error", res.get("error", "unknown error"))
        study.tell(trial, state=TrialState.FAIL)
        return f"failed #{trial.number} {name}: {res.get('error', '')[:120]}"
    rec = VariantRecord.from_dict(res["record"], f"trial {trial.number}")
    values = [objective(rec, o, cfg.accuracy_on) for o in cfg.objectives]
    if any(v is None for v in values):
        missing = [o for o, v in zip(cfg.objectives, values, strict=False) if v is None]
        trial.set_user_attr("error", f"objective(s) {missing} not measured")
        study.tell(trial, state=TrialState.FAIL)
        return f"failed #{trial.number} {name}: objective(s) {missing} not measured"
    bad = violations(rec, limits, cfg.accuracy_on)
    trial.set_user_attr("record", res["record"])
    trial.set_user_attr("objectives", list(cfg.objectives))
    for key, value in margins(rec, limits).items():  # feasible when <= 0; the samplers prefer feasible trials
        trial.set_constraint(key, value)
    trial.set_user_attr("violations", bad)
    study.tell(trial, [float(v) for v in values])  # type: ignore[arg-type]
    shown = ", ".join(f"{o}={v:.4g}" for o, v in zip(cfg.objectives, values, strict=False))
    return f"#{trial.number} {name}: {shown}" + (" (over budget)" if bad else "")


# ---------------------------------------------------------------- outputs
def write_outputs(result: SearchResult) -> None:
    """OUT/pareto.json (every trial and the front) and OUT/report.html (table + Pareto plot)."""
    from effai.fileio import write_json
    from effai.search.report import write_report

    write_json(result.out / "pareto.json", result.to_dict())
    write_report(result, result.out / "report.html")
