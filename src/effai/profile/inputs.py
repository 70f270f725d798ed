"""A model's inputs: one tensor, several (ids, mask, token types), or a dict of named tensors.

Everything that runs a model (profile, latency, ONNX export) takes `example_inputs` in one of
these forms; `as_call` turns it into the (args, kwargs) of one forward call, and
`positional` into a model taking positional tensors only (what the ONNX exporter and the
runtimes need), with a name for each. `InputSpec` describes an input without data
(`input_ids:1x128:int64`); `example_tensors` makes seeded tensors for specs: random token ids
below the model's vocabulary for integer inputs, ones for masks, zeros for token types.

>>> specs = parse_specs("input_ids:2x16:int64,attention_mask:2x16:int64")
>>> [(s.name, s.shape, s.dtype) for s in specs]
[('input_ids', (2, 16), 'int64'), ('attention_mask', (2, 16), 'int64')]
>>> xs = example_tensors(specs, torch.nn.Embedding(50, 8))
>>> xs["input_ids"].dtype, int(xs["input_ids"].max()) < 50, int(xs["attention_mask"].min())
(torch.int64, True, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from effai.errors import InputError

DTYPES = {"float32": torch.float32, "float": torch.float32, "fp32": torch.float32, "float16": torch.float16,
          "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64,
          "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
          "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}


@dataclass(frozen=True)
class InputSpec:
    """One named input: its shape (batch first) and dtype name (a key of `DTYPES`)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def parse_shape(text: str, what: str = "--input") -> tuple[int, ...]:
    """`1x3x224x224` -> (1, 3, 224, 224), refusing anything else with one line."""
    try:
        dims = tuple(int(d) for d in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise InputError(f"{what}: expected dimensions like 1x3x224x224, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise InputError(f"{what}: expected positive dimensions like 1x3x224x224, got {text!r}")
    return dims


def parse_specs(text: str, what: str = "--input") -> tuple[InputSpec, ...]:
    """`1x3x32x32` (one float input) or `name:shape:dtype,...` (dtype defaults to float32)."""
    if ":" not in text:
        return (InputSpec("input", parse_shape(text, what)),)
    specs = []
    for part in text.split(","):
        fields = part.strip().split(":")
        if len(fields) not in (2, 3) or not fields[0].isidentifier():
            raise InputError(f"{what}: expected name:shape:dtype like input_ids:1x128:int64, got {part!r}")
        dtype = fields[2].lower() if len(fields) == 3 else "float32"
        if dtype not in DTYPES:
            raise InputError(f"{what}: {part!r}: dtype must be one of {', '.join(sorted(DTYPES))}")
        specs.append(InputSpec(fields[0], parse_shape(fields[1], what), dtype))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError(f"{what}: input names must differ, got {names}")
    return tuple(specs)


def vocabulary_size(model) -> int:
    """Token ids must stay below the first embedding table's size (the word embeddings)."""
    if isinstance(model, torch.nn.Module):
        for m in model.modules():
            if isinstance(m, torch.nn.Embedding):
                return int(m.num_embeddings)
    return 100


def example_tensors(specs, model=None, batch_size: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded tensors for `specs`; float inputs are standard normal."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for s in specs:
        shape = (batch_size, *s.shape[1:]) if batch_size is not None else s.shape
        dt = s.torch_dtype
        if dt.is_floating_point:
            out[s.name] = torch.randn(shape, generator=g).to(dt)
        elif dt == torch.bool or "mask" in s.name:
            out[s.name] = torch.ones(shape, dtype=dt)
        elif "type" in s.name or "segment" in s.name:
            out[s.name] = torch.zeros(shape, dtype=dt)
        else:
            out[s.name] = torch.randint(0, vocabulary_size(model), shape, generator=g).to(dt)
    return out


def as_call(example_inputs, what: str = "example_inputs") -> tuple[tuple, dict]:
    """A tensor, a tuple/list of tensors or a dict of named tensors -> (args, kwargs)."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, dict) and example_inputs:
        bad = [k for k, v in example_inputs.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise InputError(f"{what}: a dict of inputs maps names to tensors; {bad[0]!r} does not")
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)) and example_inputs and all(
            isinstance(x, torch.Tensor) for x in example_inputs):
        return tuple(example_inputs), {}
    raise InputError(f"{what}: expected a tensor, a tuple of tensors or a dict of named tensors, "
                     f"got {type(example_inputs).__name__}")


def tensors_of(example_inputs) -> list[torch.Tensor]:
    args, kwargs = as_call(example_inputs)
    return [*args, *kwargs.values()]


def first_tensor(out):
    """The first tensor of a model's output (HF ModelOutput, tuple, dict or tensor)."""
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    for v in values:
        t = first_tensor(v)
        if t is not None:
            return t
    return None


class KeywordCall(torch.nn.Module):
    """Calls `model(**dict(zip(names, xs)))` and returns its first tensor (the logits): the
    positional, single-output form that ONNX export and runtimes need. A GPT-2's key/value
    cache and other extra outputs are not part of the exported graph."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = list(names)
        self.train(model.training)  # export restores the wrapper's mode: it must be the model's

    def forward(self, *xs):
        return first_tensor(self.model(**dict(zip(self.names, xs, strict=True))))


def positional(model, example_inputs) -> tuple[torch.nn.Module, tuple, list[str]]:
    """(model taking positional tensors, the tensors, their names) for export and timing."""
    args, kwargs = as_call(example_inputs)
    if kwargs:
        return KeywordCall(model, list(kwargs)), tuple(kwargs.values()), list(kwargs)
    names = [f"input{i}" if i else "input" for i in range(len(args))]
    return model, args, names


def dynamic_axes(names: list[str], tensors) -> dict[str, dict[int, str]]:
    """Batch (axis 0) dynamic for every input, sequence (axis 1) too for integer token inputs."""
    axes = {}
    for n, t in zip(names, tensors, strict=True):
        axes[n] = {0: "batch"}
        if not t.is_floating_point() and t.dim() >= 2:
            axes[n][1] = "sequence"
    return axes
