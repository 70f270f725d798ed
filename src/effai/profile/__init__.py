"""effai.profile: what a model costs, in counts, memory, latency and energy.

`effai.profile(model, input_shape=(1, 3, 224, 224))` (this package is callable) returns a
`Profile`. Counts come from one eager pass under a dispatch-level counter (`counting`),
peak activation memory from tensor liveness over that pass (`memory`), latency from
`measure_latency` (torch eager or ONNX Runtime), energy from hardware counters where they
exist and an op-level Horowitz 45 nm model otherwise (`energy`). ONNX files are counted
from their graph (`onnx_graph`).

>>> import torch, effai
>>> p = effai.profile(torch.nn.Conv2d(3, 8, 3, padding=1), input_shape=(1, 3, 8, 8), latency=False)
>>> p.total.params, p.total.macs, p.total.flops      # 8*3*9 + 8; 8*8*8 outputs x 27 MACs
(224, 13824, 27648)
"""

from __future__ import annotations

import os
import sys
import types

import torch

from effai.errors import InputError
from effai.profile.counting import CountingMode, ModuleStack
from effai.profile.energy import Energy, Meter, estimate, precision_for
from effai.profile.inputs import InputSpec, as_call, example_tensors, parse_specs
from effai.profile.latency import RUNTIMES, Latency, interleaved, measure_latency, onnx_runner
from effai.profile.memory import _storage_key, allocator_peak, count_params, peak_from_events, weight_bytes
from effai.profile.result import LayerProfile, Profile, Total
from effai.results.units import fmt_bytes

__all__ = ["profile", "Profile", "LayerProfile", "Total", "Latency", "Energy", "measure_latency",
           "interleaved", "onnx_runner", "weight_bytes", "count_params"]


def _starts_with_embedding(model) -> bool:
    first = next((m for m in model.modules() if next(m.parameters(recurse=False), None) is not None), None)
    return isinstance(first, torch.nn.Embedding)


def _inputs(model, input_shape, example_inputs, batch_size) -> tuple[tuple, dict]:
    """(args, kwargs) of the profiled call, from example inputs, specs or one shape."""
    if example_inputs is not None:
        args, kwargs = as_call(example_inputs)
        if batch_size is not None:
            grow = lambda a: a[:1].expand(batch_size, *a.shape[1:]).contiguous()  # noqa: E731
            args, kwargs = tuple(grow(a) for a in args), {k: grow(v) for k, v in kwargs.items()}
        return args, kwargs
    if input_shape is None:
        raise InputError("profile: pass input_shape=(N, C, H, W), input specs or example_inputs")
    if isinstance(input_shape, str):
        input_shape = parse_specs(input_shape, "input_shape")
    if input_shape and all(isinstance(s, InputSpec) for s in input_shape):
        xs = example_tensors(input_shape, model, batch_size)
        return ((*xs.values(),), {}) if [s.name for s in input_shape] == ["input"] else ((), xs)
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise InputError(f"input_shape: expected positive dimensions, got {input_shape}")
    if batch_size is not None:
        shape = (batch_size, *shape[1:])
    if isinstance(model, torch.nn.Module) and _starts_with_embedding(model):  # token ids, not floats
        return (*example_tensors([InputSpec("input_ids", shape, "int64")], model).values(),), {}
    p = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    device = p.device if p is not None else torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    return (torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype),), {}


def available_memory_bytes() -> int | None:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup limit if any."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit, encoding="ascii") as f:
                lim = f.read().strip()
            with open(used, encoding="ascii") as f:
                cur = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if lim.isdigit() and int(lim) < 1 << 60:
            avail = min(avail, max(int(lim) - cur, 0))
        break
    return avail


def check_memory(model, input_shape, batch_size=None, latency: bool = True) -> None:
    """Refuse, before allocating anything, an input whose estimated memory exceeds what is free.

    The estimate is the input tensor plus the peak live activations of a batch-1 pass (run on
    shapes only) times the batch. Models on the meta device allocate nothing and are not checked.

    >>> import torch
    >>> check_memory(torch.nn.Linear(4, 2), (1 << 40, 4))
    Traceback (most recent call last):
    effai.errors.InputError: input 1099511627776x4: needs about 17.6 TB of memory (estimate: the input alone), but only ... are available; use a smaller batch
    """
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        return  # _inputs reports the bad shape
    if not shape or any(s < 1 for s in shape):
        return
    if batch_size is not None:
        shape = (int(batch_size), *shape[1:])
    if not isinstance(model, torch.nn.Module):
        return
    p = next(iter(model.parameters()), None)
    if p is not None and p.device.type == "meta":
        return
    avail = available_memory_bytes()
    if avail is None:
        return
    itemsize = p.element_size() if p is not None and p.is_floating_point() else 4
    per_sample = itemsize
    for d in shape[1:]:
        per_sample *= d
    batch = shape[0]
    need, how = per_sample * batch, "the input alone"
    where = "input " + "x".join(map(str, shape))
    if need <= avail and batch > 1 and per_sample * batch > avail // 64:
        # Large enough to matter: add activations, estimated from a shapes-only batch-1 pass.
        one = (torch.randn((1, *shape[1:]), dtype=p.dtype if p is not None and p.is_floating_point()
                           else torch.float32),)
        was_training = model.training
        model.eval()
        try:
            _, mode, in_ids, out_ids = _count_pass(model, one, exact=False)
            peak1, _ = peak_from_events(mode.events, mode.sizes, in_ids, out_ids)
            need, how = max(need, peak1 * batch), f"peak activations of one sample x batch {batch}"
        except Exception:  # noqa: BLE001 - the real pass reports a forward that fails
            pass
        finally:
            model.train(was_training)
    if need > avail:
        raise InputError(f"{where}: needs about {fmt_bytes(need)} of memory (estimate: {how}), but only "
                         f"{fmt_bytes(avail)} are available; use a smaller batch")


def _flat_tensors(tree):
    from torch.utils._pytree import tree_flatten

    return [x for x in tree_flatten(tree)[0] if isinstance(x, torch.Tensor)]


def _count_pass(model, args, time_ops=False, exact=True, kwargs=None):
    kwargs = kwargs or {}
    exclude = set()
    from torch.multiprocessing.reductions import StorageWeakRef

    for t in list(model.parameters()) + list(model.buffers()):
        try:
            exclude.add(StorageWeakRef(t.untyped_storage()).cdata)
        except (RuntimeError, NotImplementedError):
            pass
    tracker = ModuleStack(model)
    mode = CountingMode(tracker, exclude, time_ops=time_ops, exact=exact)
    try:
        in_ids = [mode.storage_id(a) for a in (*args, *kwargs.values())]
        with torch.no_grad(), mode:
            out = model(*args, **kwargs)
        out_ids = [mode.storage_id(t) for t in _flat_tensors(out)]
    finally:
        tracker.remove()
    return tracker, mode, [i for i in in_ids if i is not None], [i for i in out_ids if i is not None]


def profile(model, input_shape=None, example_inputs=None, *, batch_size: int | None = None,  # noqa: C901 - the public boundary: validates every argument once, then counts and times
            latency: bool = True, runtime: str = "torch", threads: int | None = 1, warmup: int = 10,
            repeats: int = 30, min_seconds: float = 1.0, max_seconds: float = 20.0,
            bits: float | None = None, energy: bool = True,
            exact: bool = False, name: str | None = None) -> Profile:
    """Profile `model` (an `nn.Module`, TorchScript module or path to an `.onnx` file).

    - `input_shape` includes the batch, e.g. `(1, 3, 224, 224)`; or pass `example_inputs`.
      `batch_size` overrides the batch dimension.
    - `latency=False` skips timing (counts and memory only, fast). `runtime` is `"torch"`
      (eager), `"onnxruntime"` or `"openvino"` (the model exported to ONNX; an ONNX file runs
      on ONNX Runtime unless `runtime="openvino"`); `threads` is 1 by default, as in the CLI
      (reproducible on a shared machine; None: torch's current thread count); `warmup`, `repeats`,
      `min_seconds` as in `measure_latency` (timing stops after `max_seconds` even with fewer repeats).
    - `exact=False` runs each op on the meta device during counting (shapes only, outputs
      left uninitialised), so counting costs no arithmetic; if that pass fails it is rerun with
      real arithmetic. Pass `exact=True` for a model whose control flow depends on values.
    - A model built on the meta device (`with torch.device("meta"): ...`) is counted without
      allocating weights or activations (latency then needs a real model).
    - `bits` sets the weight bit-width for `weight_bytes` and the energy model (None: as stored).

    Ops that cannot be counted are listed in `Profile.uncounted` with their layer.

    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> p = profile(m, input_shape=(2, 16), latency=False)
    >>> p.total.params, p.total.macs, [lp.name for lp in p.layers]
    (676, 1280, ['0', '1', '2'])
    >>> p.energy.method
    'estimated'
    """
    if isinstance(model, (str, os.PathLike)):
        from effai.profile.onnx_graph import profile_onnx

        return profile_onnx(model, input_shape=input_shape, batch_size=batch_size, latency=latency,
                            threads=threads, warmup=warmup, repeats=repeats, min_seconds=min_seconds,
                            max_seconds=max_seconds, bits=bits, energy=energy, name=name,
                            runtime="onnxruntime" if runtime == "torch" else runtime)
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model: expected an nn.Module or a path to an .onnx file, got {type(model).__name__}")
    if runtime not in RUNTIMES:
        raise InputError(f"runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if example_inputs is None and input_shape is not None and not isinstance(input_shape, str) and not any(
            isinstance(s, InputSpec) for s in input_shape):
        check_memory(model, input_shape, batch_size, latency=latency)
    args, kwargs = _inputs(model, input_shape, example_inputs, batch_size)
    tensors = [*args, *kwargs.values()]
    was_training = model.training
    model.eval()
    try:
        try:
            try:
                tracker, mode, in_ids, out_ids = _count_pass(model, args, exact=exact, kwargs=kwargs)
            except Exception:  # noqa: BLE001 - shape-only pass failed: count with real arithmetic
                if exact:
                    raise
                tracker, mode, in_ids, out_ids = _count_pass(model, args, exact=True, kwargs=kwargs)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            shapes = ", ".join("x".join(map(str, a.shape)) + f" {str(a.dtype).replace('torch.', '')}"
                               for a in tensors)
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise InputError(f"input: the model's forward failed on input {shapes}: {msg}") from None
        rows = list(tracker.rows.values())
        peak, at = peak_from_events(mode.events, mode.sizes, in_ids, out_ids)
        peak_at = mode.events[at][2] if mode.events else None
        device = tensors[0].device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            with torch.no_grad():
                model(*args, **kwargs)
            alloc, note = allocator_peak(device)
            alloc = alloc - base if alloc is not None else None
        else:
            alloc, note = allocator_peak(device)

        lat = None
        measured_energy = None
        if device.type == "meta":
            latency = False  # nothing to time: the weights do not exist
        if latency:
            meter = Meter(device.type)
            with meter:
                lat = measure_latency(model, kwargs or args, runtime=runtime, threads=threads, warmup=warmup,
                                      repeats=repeats, min_seconds=min_seconds, max_seconds=max_seconds)
            if meter.joules is not None:
                calls = lat.repeats + lat.warmup
                measured_energy = Energy(joules=meter.joules / calls, method="measured",
                                         detail=f"measured with {meter.source} over {calls} calls ({runtime}, "
                                                f"{lat.threads} threads); counts the whole package incl. idle")
            if runtime == "torch":  # per-layer time shares from one warm timed pass
                timed, tmode, _, _ = _count_pass(model, args, time_ops=True, kwargs=kwargs)
                for r in rows:
                    tr = timed.rows.get(r.name)
                    r.seconds = tr.seconds if tr else 0.0
    finally:
        model.train(was_training)

    layers, seen = [], set()
    uncounted_rows = {layer for layer, _ in mode.uncounted}
    for r in rows:
        if (r.functional and not r.macs and not r.elementwise_flops and r.name not in uncounted_rows
                and not any(True for _ in (r.module.parameters(recurse=False) if r.module else ()))):
            continue  # a view or copy in a container's forward: no cost, not a layer
        n_params = 0
        if r.module is not None:
            for p in r.module.parameters(recurse=False):
                key = _storage_key(p)
                if key not in seen:
                    seen.add(key)
                    n_params += p.numel()
        layers.append(LayerProfile(name=r.name, type=r.type, output_shape=list(r.output_shape or []) or None,
                                   params=n_params, macs=r.macs, flops=2 * r.macs,
                                   elementwise_flops=r.elementwise_flops, activation_bytes=r.activation_bytes,
                                   calls=r.calls, latency_ms=r.seconds * 1e3 if latency and runtime == "torch"
                                   else None, ops=dict(r.ops)))
    macs = sum(lp.macs for lp in layers)
    elem = sum(lp.elementwise_flops for lp in layers)
    wbytes = weight_bytes(model, bits=bits)
    total = Total(params=count_params(model), macs=macs, flops=2 * macs, elementwise_flops=elem,
                  weight_bytes=wbytes, peak_activation_bytes=peak, peak_at=peak_at,
                  allocator_peak_bytes=alloc, allocator_note=note)
    p0 = next(iter(model.parameters()), None)
    dtype = str(p0.dtype).replace("torch.", "") if p0 is not None else "float32"
    en = measured_energy
    if en is None and energy:
        act = sum(mode.sizes.values())
        floating = p0 is None or p0.is_floating_point()
        prec = precision_for(bits if bits is not None else (p0.element_size() * 8 if p0 is not None else 32),
                             floating)
        en = estimate(macs, elem, wbytes, act, precision=prec)
    uncounted = [{"layer": layer, "op": op, "calls": n} for (layer, op), n in mode.uncounted.items()]
    return Profile(model=name or type(model).__name__, input_shape=list(tensors[0].shape), total=total,
                   layers=layers, latency=lat, energy=en, uncounted=uncounted, dtype=dtype, source="torch",
                   notes={"peak_activation": "liveness over the executed aten graph at this batch size; "
                          "inputs and outputs included, weights and kernel workspaces excluded",
                          "counting": "TorchDispatchMode over one eager no_grad pass; see docs/decisions.md"})


class _CallableModule(types.ModuleType):
    """Makes `effai.profile(model, ...)` work while `effai.profile.Profile` stays importable."""

    def __call__(self, *args, **kwargs) -> Profile:
        return profile(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
