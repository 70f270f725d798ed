"""`deploy`: an int8 model -> C -> Cortex-M firmware, run in QEMU, checked bit for bit against
effai's integer reference, with flash, SRAM and instruction counts from the real build."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from effai.errors import InputError
from effai.fileio import write_json
from effai.mcu import build as mcu_build
from effai.mcu import codegen, lower, planner, qemu, reference
from effai.mcu.targets import mcu_target

LATENCY_METHOD = "estimated: instructions counted in QEMU x {cpi} cycles/instruction ({source}) at {mhz:g} MHz"


@dataclass(frozen=True)
class LayerResult:
    name: str
    op: str
    macs: int
    instructions: int

    @property
    def instructions_per_mac(self) -> float | None:
        return self.instructions / self.macs if self.macs else None


@dataclass(frozen=True)
class DeployResult:
    """What one `deploy` measured (sizes from the ELF, counts from QEMU) and estimated (latency)."""

    target: str
    core: str
    qemu_machine: str
    kernels: str  # "dsp" (SMLAD/SXTB16), "mve" (Helium, Cortex-M55) or "portable"
    fits: bool
    reason: str  # "" when it fits, else the linker's verdict in one line
    bit_exact: bool
    inputs_checked: int
    mismatches: int  # inputs whose outputs differ from the reference in any byte
    flash_bytes: int  # text + data, from arm-none-eabi-size
    sram_bytes: int  # data + bss (arena, stack reservation), from arm-none-eabi-size
    weight_bytes: int
    arena_bytes: int
    tflm_greedy_arena_bytes: int
    stack_bytes: int  # measured high-water mark (painted stack)
    instructions: int  # per inference, counted by the QEMU plugin
    layers: tuple[LayerResult, ...]
    macs: int
    estimated_latency_ms: float | None
    latency_method: str
    elf: str | None
    exit_code: int | None
    agreement_with_float: float | None = None  # classifiers: share of inputs where firmware and float model agree (argmax)
    accuracy: float | None = None  # with labels: the firmware's accuracy on the inputs checked
    onnxruntime_max_diff_lsb: int | None = None  # ONNX Runtime's int8 run of the same graph (QOperator) vs the reference
    onnxruntime_equal_share: float | None = None  # share of output bytes where ONNX Runtime gives the same int8 value

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [{**asdict(layer), "instructions_per_mac": layer.instructions_per_mac} for layer in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DeployResult:
        layers = tuple(LayerResult(**{k: v for k, v in x.items() if k != "instructions_per_mac"}) for x in d["layers"])
        return cls(**{**d, "layers": layers})

    @classmethod
    def load(cls, path) -> DeployResult:
        return cls.from_dict(json.loads(Path(path).read_text()))


def deploy(model: nn.Module | str | Path, target, out, inputs=None, calibration=None, input_shape=None,
           n_inputs: int = 8, kernels: str | None = None, seed: int = 0, count_instructions: bool = True,
           labels=None) -> DeployResult:
    """Compile `model` (float, or int8 from effai.quantize) for the microcontroller `target` (a
    catalogue name or Target with an `mcu:` entry), build it,
    run `inputs` (float, as the model takes them; random normal of `input_shape` if None) in QEMU.

    `model` may also be an int8 ONNX file in QOperator form (effai.mcu.onnx_import: its own scales,
    no calibration). `calibration` sets the int8 activation ranges (default: the inputs); `labels` (one class per
    input) adds the firmware's accuracy. Writes `out/deploy.json` and `out/firmware.elf`. A model
    that does not fit returns fits=False with the reason.

    >>> r = deploy(torch.nn.Sequential(torch.nn.Linear(16, 4)), "nano33ble", out="/tmp/effai-doctest-fw",
    ...            input_shape=(16,), n_inputs=2)
    >>> r.fits, r.bit_exact, r.inputs_checked
    (True, True, 2)
    """
    tgt = mcu_target(target)
    mcu_build.require_toolchain()
    onnx_graph = _onnx_graph(model)
    if onnx_graph is not None and input_shape is None:
        input_shape = _model_shape(onnx_graph)
    x = _inputs(inputs, input_shape, n_inputs, seed)
    calib = x if calibration is None else torch.as_tensor(np.asarray(calibration), dtype=torch.float32)
    kernels = kernels or tgt.core.default_kernels
    if kernels not in codegen.KERNELS or kernels not in tgt.core.kernels:
        raise InputError(f"kernels: {tgt.core.name} runs {', '.join(tgt.core.kernels)}, got {kernels!r}")
    out = Path(out).resolve()  # the compiler and QEMU run inside the build folder
    work = out / "build"
    shutil.rmtree(work, ignore_errors=True)
    graph = onnx_graph if onnx_graph is not None else lower.lower(cast(nn.Module, model), calib)
    plan, baseline = planner.plan(graph, kernels), planner.tflm_greedy(graph, kernels)
    src = codegen.generate(graph, plan, work, kernels)
    b = mcu_build.build(src, tgt, kernels)
    macs = sum(op.macs for op in graph.ops)
    common: dict[str, Any] = dict(target=tgt.name, core=tgt.core.name, qemu_machine=tgt.core.qemu_machine, kernels=kernels,
                  fits=b.fits, reason=b.reason, flash_bytes=b.flash_bytes, sram_bytes=b.sram_bytes,
                  weight_bytes=graph.weight_bytes, arena_bytes=plan.arena_bytes,
                  tflm_greedy_arena_bytes=baseline.arena_bytes, macs=macs)
    if not b.fits:
        result = DeployResult(**common, bit_exact=False, inputs_checked=0, mismatches=0, stack_bytes=0, instructions=0,
                              layers=tuple(LayerResult(op.name, op.label, op.macs, 0) for op in graph.ops),
                              estimated_latency_ms=None, latency_method="", elf=None, exit_code=None)
        write_json(out / "deploy.json", result.to_dict())
        return result
    elf = out / "firmware.elf"
    shutil.move(str(b.elf), elf)
    q_in = reference.quantize_input(graph, x.numpy())
    expected = reference.run(graph, q_in)[graph.output].reshape(len(x), -1)
    r = qemu.run(elf, tgt, q_in.reshape(len(x), -1), expected.shape[1], count=count_instructions)
    got = r.outputs
    checked = min(len(got), len(expected))
    mismatches = int((got[:checked] != expected[:checked]).any(axis=1).sum()) + (len(expected) - checked)
    layers, total = _layer_counts(graph, r.marks, len(x))
    cpi = tgt.core.cycles_per_instruction
    latency = total * cpi / tgt.clock_hz * 1e3 if total else None
    method = LATENCY_METHOD.format(cpi=cpi, source=tgt.core.cpi_source, mhz=tgt.clock_hz / 1e6) if total else ""
    agree, acc = (_agreement(cast(nn.Module, model), x, got[:checked], labels) if onnx_graph is None
                  else (None, _accuracy(got[:checked], labels)))
    ort_diff, ort_equal = _onnxruntime(graph, q_in.reshape(len(x), -1), expected)
    result = DeployResult(**common, bit_exact=r.exit_code == 0 and checked == len(x) and mismatches == 0,
                          inputs_checked=checked, mismatches=mismatches, stack_bytes=r.stack_bytes, instructions=total,
                          layers=layers, estimated_latency_ms=latency, latency_method=method, elf=str(elf),
                          exit_code=r.exit_code, agreement_with_float=agree, accuracy=acc,
                          onnxruntime_max_diff_lsb=ort_diff, onnxruntime_equal_share=ort_equal)
    write_json(out / "deploy.json", result.to_dict())
    return result


def _onnx_graph(model):
    """The Graph of an ONNX file given as a path, else None (a torch model is lowered later)."""
    if isinstance(model, nn.Module):
        return None
    if not isinstance(model, (str, Path)) or Path(model).suffix != ".onnx":
        raise InputError(f"model: expected a torch.nn.Module or an .onnx file, got {model!r}")
    from effai.mcu import onnx_import

    if not Path(model).is_file():
        raise InputError(f"{model}: no such file")
    return onnx_import.load(model)


def _model_shape(graph) -> tuple[int, ...]:
    """The model's input shape without batch, as it takes floats (C, H, W) or (features,)."""
    s = graph.tensors[graph.input].shape
    return (s[2], s[0], s[1]) if len(s) == 3 else s


def _accuracy(got: np.ndarray, labels) -> float | None:
    if labels is None or got.ndim != 2 or got.shape[1] < 2 or len(got) == 0:
        return None
    return float((got.argmax(axis=1) == np.asarray(labels).reshape(-1)[: len(got)]).mean())


def _agreement(model: nn.Module, x: torch.Tensor, got: np.ndarray, labels) -> tuple[float | None, float | None]:
    """Argmax agreement with the float model, and accuracy against `labels` (classifiers only)."""
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    if ref.ndim != 2 or ref.shape[1] < 2 or len(got) == 0 or ref.shape[1] == x[0].numel():  # not a classifier
        return None, None
    agree = float((got.argmax(axis=1) == ref[: len(got)].argmax(axis=1)).mean())
    return agree, _accuracy(got, labels)


def _onnxruntime(graph, q_in: np.ndarray, expected: np.ndarray) -> tuple[int | None, float | None]:
    """The same integer graph in ONNX Runtime (QOperator), compared with the reference; None without onnxruntime."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, None
    from effai.mcu import ort

    return ort.compare(expected, ort.run(graph, q_in))


def _inputs(inputs, input_shape, n: int, seed: int) -> torch.Tensor:
    if inputs is not None:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        if x.ndim < 2 or len(x) == 0:
            raise InputError(f"inputs: expected a batch (N, ...) of model inputs, got shape {tuple(x.shape)}")
        return x
    if input_shape is None:
        raise InputError("deploy: give inputs (a batch of model inputs) or input_shape")
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *input_shape), generator=g)


def _layer_counts(graph, marks: tuple[int, ...], n: int) -> tuple[tuple[LayerResult, ...], int]:
    """Per-layer instructions (median over inferences) from the counter at each effai_mark()."""
    per = len(graph.ops) + 1
    if len(marks) < per * n:
        return tuple(LayerResult(op.name, op.label, op.macs, 0) for op in graph.ops), 0
    m = np.asarray(marks[: per * n], dtype=np.int64).reshape(n, per)
    counts = np.median(np.diff(m, axis=1), axis=0).astype(int)
    layers = tuple(LayerResult(op.name, op.label, op.macs, int(c)) for op, c in zip(graph.ops, counts, strict=True))
    return layers, int(counts.sum())
