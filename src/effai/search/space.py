"""The search space, sampled define-by-run from an Optuna trial in the driver.

Each dimension of `SpaceConfig` becomes one Optuna parameter; with `per_layer_bits` every
Conv/Linear layer of the sampled family gets its own `bits:<family>:<layer>` parameter.
The result is a plain `variant` dict that workers turn into a model (`effai.search.trial`).

>>> import optuna
>>> from effai.search.config import SpaceConfig
>>> space = SpaceConfig(family=["lenet5"], bits=[8, 4], per_layer_bits=True)
>>> t = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
>>> v = suggest(t, space)
>>> v["family"], sorted(v["layer_bits"])[:2], set(v["layer_bits"].values()) <= {8, 4}
('lenet5', ['classifier.0', 'classifier.2'], True)
"""

from __future__ import annotations

import functools

from effai.search.config import Dim, SpaceConfig


def _suggest(trial, name: str, dim: Dim):
    if dim.choices is not None:
        return trial.suggest_categorical(name, list(dim.choices))
    low, high = float(dim.low or 0), float(dim.high or 0)  # a Dim without choices has both (validated)
    if dim.step and float(dim.step).is_integer() and low.is_integer() and high.is_integer():
        return trial.suggest_int(name, int(low), int(high), step=int(dim.step), log=dim.log)
    return trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)


@functools.lru_cache(maxsize=32)
def _layers(family: str) -> tuple[str, ...]:
    from effai import zoo
    from effai.search.trial import quant_layers

    return tuple(quant_layers(zoo.create(family)))


def suggest(trial, space: SpaceConfig) -> dict:
    """Sample one variant (a plain dict) from `space` through `trial`."""
    family = _suggest(trial, "family", space.family)
    v = {
        "family": family,
        "width_mult": float(_suggest(trial, "width_mult", space.width_mult)),
        "resolution_mult": float(_suggest(trial, "resolution_mult", space.resolution_mult)),
        "prune_ratio": float(_suggest(trial, "prune_ratio", space.prune_ratio)),
        "kd": bool(_suggest(trial, "kd", space.kd)),
        "qat": bool(_suggest(trial, "qat", space.qat)),
        "bits": 32,
        "layer_bits": None,
    }
    if space.per_layer_bits:
        # Layer names of the unpruned model at width 1.0; channel pruning keeps the names.
        v["layer_bits"] = {n: int(_suggest(trial, f"bits:{family}:{n}", space.bits)) for n in _layers(family)}
        v["bits"] = max(v["layer_bits"].values())
    else:
        v["bits"] = int(_suggest(trial, "bits", space.bits))
    if v["bits"] == 32 and not v["layer_bits"]:
        v["qat"] = False  # nothing to quantize
    return v


def start_params(initial: dict, space: SpaceConfig) -> dict:
    """Optuna parameters for one `initial` start point; with per-layer bits, `bits` fills every layer.

    >>> start_params({"family": "lenet5", "bits": 8}, SpaceConfig(per_layer_bits=True))["bits:lenet5:features.0"]
    8
    """
    p = dict(initial)
    if space.per_layer_bits and "bits" in p:
        b = p.pop("bits")
        for family in ([p["family"]] if "family" in p else space.family.values()):
            p.update({f"bits:{family}:{n}": b for n in _layers(family)})
    return p
