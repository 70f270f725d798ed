"""The `effai compress` recipe: a YAML file validated with pydantic (unknown keys and wrong
types are an `InputError` naming the file, line and field).

Example recipe::

    dataset: mnist5k
    train_epochs: 15      # train MODEL first (a zoo name starts untrained); 0 = use as given
    sparsity: 0.92
    prune_epochs: 20
    fc_bits: 5
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from effai.compress.pipeline import DeepCompressionConfig


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "mnist5k"
    seed: int = 0
    train_epochs: int = Field(0, ge=0)
    train_lr: float = Field(3e-3, gt=0)
    sparsity: float = Field(0.92, ge=0, lt=1)
    scope: str = "global"
    prune_epochs: int = Field(12, ge=1)
    prune_lr: float = Field(1e-3, gt=0)
    conv_bits: int = Field(8, ge=1, le=12)
    fc_bits: int = Field(5, ge=1, le=12)
    conv_gap_bits: int = Field(8, ge=1, le=12)
    fc_gap_bits: int = Field(5, ge=1, le=12)
    finetune_epochs: int = Field(4, ge=0)
    finetune_lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(128, ge=1)

    def config(self) -> DeepCompressionConfig:
        keys = DeepCompressionConfig.__dataclass_fields__
        return DeepCompressionConfig(**{k: v for k, v in self.model_dump().items() if k in keys})


def load_recipe(path) -> Recipe:
    """Read and validate a recipe file.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "r.yaml")
    >>> _ = open(p, "w").write("sparsity: 0.9\\nfc_bits: five\\n")
    >>> try:
    ...     load_recipe(p)
    ... except Exception as e:
    ...     print(str(e).replace(p, "r.yaml"))
    r.yaml:2: fc_bits: Input should be a valid integer, unable to parse string as an integer (got 'five')
    """
    from effai.config import load_yaml_model

    return load_yaml_model(path, Recipe)


def run(model_spec: str, recipe_path, out_dir, arch: str | None = None, trust_pickle: bool = False,
        progress: bool = False, model_args: dict | None = None) -> dict:
    """Load MODEL, (optionally) train it, compress it; write DIR/model.effdc and DIR/report.json."""
    import torch

    from effai import data as data_mod
    from effai.compress.pipeline import deep_compression
    from effai.fileio import write_json
    from effai.train import TrainConfig, fit
    from effai.zoo.loading import load_for_data

    recipe = load_recipe(recipe_path)
    from effai.fileio import ensure_dir

    ensure_dir(out_dir, "--out ")  # an unusable folder fails now, not after compressing
    ds = data_mod.load(recipe.dataset, seed=recipe.seed)
    lm = load_for_data(model_spec, ds, arch=arch, trust_pickle=trust_pickle, onnx_refusal="cannot be retrained",
                       model_args=model_args)
    from effai import zoo

    options = zoo.options_for(model_spec, ds)  # recorded in the compressed file when the model has none
    assert lm.model is not None  # load_for_data refuses ONNX files
    torch.manual_seed(recipe.seed)
    if recipe.train_epochs:
        fit(lm.model, ds, TrainConfig(epochs=recipe.train_epochs, lr=recipe.train_lr, seed=recipe.seed),
            progress=progress)
    out = Path(out_dir)
    arch_name = lm.meta.get("arch", lm.name)
    opts = lm.meta.get("options", options) if lm.meta else options
    _, rep = deep_compression(lm.model, ds, recipe.config(), out_path=out / "model.effdc", arch=arch_name,
                              options=opts, progress=progress)
    result = {"model": lm.name, "recipe": recipe.model_dump(), **rep.to_dict()}
    write_json(out / "report.json", result)
    return result
