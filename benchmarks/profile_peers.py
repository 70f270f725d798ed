"""effai.profile against fvcore, ptflops, thop, torchinfo and torch's FlopCounterMode.

For each model, every tool reports params and MACs from the same model and input; the
reference is a hand count (small cases, the attention model) or the zoo's published MACs.
Tools are timed in interleaved rounds (median; a contention burst hits every tool alike),
after one untimed warm-up round that pays each tool's imports and first-call costs.
FlopCounterMode reports FLOPs (2 per MAC): its number is halved. fvcore's "flops" are MACs.
torchinfo's "forward/backward pass size" is printed next to effai's liveness peak to show
it is not peak memory. Finally `effai profile mobilenet_v2 --json` is run twice from the
CLI to check that the p50 latency is reproducible.
Run: .venv/bin/python benchmarks/profile_peers.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from common import ROOT, machine, machine_line, table, write_results

import effai.profile as P
from effai import zoo


# ---------------------------------------------------------------- models with hand counts
class TinyViT(nn.Module):
    """Patch-4 conv stem, 2 pre-norm transformer blocks (SDPA, 4 heads, dim 64), mean-pool head."""

    def __init__(self, dim=64, heads=4, depth=2, classes=10):
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "ln1": nn.LayerNorm(dim), "qkv": nn.Linear(dim, 3 * dim), "proj": nn.Linear(dim, dim),
            "ln2": nn.LayerNorm(dim), "fc1": nn.Linear(dim, 2 * dim), "fc2": nn.Linear(2 * dim, dim)})
            for _ in range(depth))
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, 64 tokens, dim)
        b, n, d = x.shape
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["ln1"](x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            x = x + blk["proj"](F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
            x = x + blk["fc2"](F.gelu(blk["fc1"](blk["ln2"](x))))
        return self.head(x.mean(1))


def tinyvit_macs(dim=64, heads=4, depth=2, tokens=64, classes=10):
    stem = tokens * dim * 3 * 16
    attn = 2 * tokens * tokens * dim  # QK^T and AV over all heads
    block = tokens * dim * 3 * dim + attn + tokens * dim * dim + 2 * tokens * dim * 2 * dim
    return stem + depth * block + dim * classes


class FunctionalConv(nn.Module):
    """A conv and a matmul called functionally: module-hook counters cannot see them."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(16, 8, 3, 3))
        self.fc = nn.Linear(16, 16)

    def forward(self, x):  # x: 1x8x16x16
        y = F.conv2d(x, self.w, padding=1)  # 16*16*16 outputs x 72 MACs = 294912
        t = y.flatten(2).transpose(1, 2)  # (1, 256, 16)
        return self.fc(t) @ t.transpose(1, 2)  # 256*16*16 = 65536 (3-D linear) + 256*256*16 = 1048576


CASES = {  # name: (model factory, input shape, hand MACs)
    "depthwise conv 3x3 (32ch, 56x56)": (lambda: nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False),
                                         (1, 32, 56, 56), 32 * 56 * 56 * 9),
    "grouped conv 3x3 (64->64, g=4, 28x28)": (lambda: nn.Conv2d(64, 64, 3, padding=1, groups=4, bias=False),
                                              (1, 64, 28, 28), 64 * 28 * 28 * 16 * 9),
    "transposed conv 4x4 s2 (32->16, 14x14 in)": (lambda: nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False),
                                                  (1, 32, 14, 14), 32 * 14 * 14 * 16 * 16),
    "functional conv + 3-D linear + matmul": (FunctionalConv, (1, 8, 16, 16), 294912 + 65536 + 1048576),
    "TinyViT (SDPA, 2 blocks)": (TinyViT, (1, 3, 32, 32), tinyvit_macs()),
}
ZOO = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1"]


# ---------------------------------------------------------------- the tools
@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def t_effai(m, shape):
    p = P.profile(m, input_shape=shape, latency=False)
    return {"macs": p.total.macs, "params": p.total.params, "peak_bytes": p.total.peak_activation_bytes,
            "uncounted": [u["op"] for u in p.uncounted]}


def t_fvcore(m, shape):
    from fvcore.nn import FlopCountAnalysis, parameter_count

    with quiet():
        fa = FlopCountAnalysis(m, torch.randn(shape))
        fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = fa.total()
        skipped = sorted(fa.unsupported_ops())
    return {"macs": int(macs), "params": int(parameter_count(m)[""]), "skipped": skipped}


def t_ptflops(m, shape):
    from ptflops import get_model_complexity_info

    with quiet():
        macs, params = get_model_complexity_info(m, tuple(shape[1:]), as_strings=False,
                                                 print_per_layer_stat=False, backend="pytorch")
    return {"macs": int(macs), "params": int(params)}


def t_ptflops_aten(m, shape):
    from ptflops import get_model_complexity_info

    with quiet():
        macs, params = get_model_complexity_info(m, tuple(shape[1:]), as_strings=False,
                                                 print_per_layer_stat=False, backend="aten")
    return {"macs": int(macs), "params": int(params)}


def t_thop(m, shape):
    from thop import profile as thop_profile

    with quiet():
        macs, params = thop_profile(copy.deepcopy(m), inputs=(torch.randn(shape),), verbose=False)
    return {"macs": int(macs), "params": int(params)}


def t_torchinfo(m, shape):
    from torchinfo import summary

    with quiet():
        s = summary(m, input_size=shape, verbose=0)
    pass_bytes = int(s.total_output_bytes)  # "Forward/backward pass size" (x2 of output bytes)
    return {"macs": int(s.total_mult_adds), "params": int(s.total_params), "pass_size_bytes": pass_bytes}


def t_flopcounter(m, shape):
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(shape)
    with quiet(), torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(x)
    return {"macs": int(fc.get_total_flops()) // 2, "params": None}


TOOLS = {"effai": t_effai, "fvcore": t_fvcore, "ptflops": t_ptflops, "ptflops-aten": t_ptflops_aten,
         "thop": t_thop, "torchinfo": t_torchinfo, "FlopCounterMode": t_flopcounter}


def run_tools(models: dict, rounds: int) -> dict:
    results = {name: {} for name in models}
    times = {name: {t: [] for t in TOOLS} for name in models}
    for r in range(rounds + 1):  # round 0: warm-up, untimed
        for name, (m, shape, _) in models.items():
            order = list(TOOLS) if r % 2 == 0 else list(reversed(TOOLS))
            for tool in order:
                t0 = time.perf_counter()
                try:
                    out = TOOLS[tool](m, shape)
                except Exception as e:  # noqa: BLE001 - a peer that fails is a result too
                    out = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"}
                dt = time.perf_counter() - t0
                if r == 0:
                    results[name][tool] = out
                elif "error" not in out:
                    times[name][tool].append(dt)
        print(f"round {r}/{rounds} done", file=sys.stderr)
    for name in models:
        for tool in TOOLS:
            ts = times[name][tool]
            results[name][tool]["seconds_median"] = statistics.median(ts) if ts else None
    return results


def cli_latency_twice(model: str, threads: int | None) -> list[dict]:
    out = []
    for _ in range(2):
        cmd = [sys.executable, "-m", "effai.cli", "profile", model, "--json"]
        if threads:
            cmd += ["--threads", str(threads)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            out.append({"error": r.stderr.strip()[-300:], "wall_s": wall})
            continue
        lat = json.loads(r.stdout)["latency"]
        out.append({"wall_s": wall, **{k: lat[k] for k in ("p50_ms", "p90_ms", "iqr_ms", "repeats", "threads",
                                                             "load_avg", "cpu_p50_ms")}})
    return out


def fmt_m(x):
    return "-" if x is None else f"{x / 1e6:,.2f}"


def mark(x, ref):
    if x is None:
        return "n/a"
    if not ref:
        return fmt_m(x)
    rel = x / ref - 1
    return f"{fmt_m(x)}" + (" ✓" if abs(rel) <= 0.01 else f" ({rel:+.0%})")


def main():  # noqa: C901 - a benchmark script's main: one branch per peer tool and table
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small cases only, 2 rounds, no CLI latency")
    ap.add_argument("--only-latency", action="store_true",
                    help="reuse the counts and times in benchmarks/results/profile_peers.json; rerun the CLI latency check")
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.only_latency:
        from common import RESULTS

        old = json.loads((RESULTS / "profile_peers.json").read_text())
        mach, load0, rounds, res = old["machine"], old.get("load_avg_start", float("nan")), old["rounds"], old["results"]
        models = {k: (None, None, ref) for k, ref in old["references"].items()}
    else:
        mach = machine()
        load0 = os.getloadavg()[0]
        models = {}
        for name, (factory, shape, hand) in CASES.items():
            models[name] = (factory().eval(), shape, {"ref": hand, "ref_kind": "hand count"})
        if not a.quick:
            for name in ZOO:
                info = zoo.info(name)
                models[name] = (zoo.create(name).eval(), (1, *info.input_shape),
                                {"ref": info.published_macs, "ref_kind": "published",
                                 "published_params": info.published_params})
        rounds = 2 if a.quick else a.rounds
        res = run_tools(models, rounds)

    tools = list(TOOLS)
    rows_macs, rows_params, rows_time, rows_mem = [], [], [], []
    for name, (_m, _shape, ref) in models.items():
        r = res[name]
        rows_macs.append([name, f"{fmt_m(ref['ref'])} ({ref['ref_kind']})"]
                         + [r[t].get("error", "")[:40] or mark(r[t].get("macs"), ref["ref"]) for t in tools])
        pub = ref.get("published_params") or r["effai"].get("params")
        rows_params.append([name, f"{pub:,}"] + [("err" if "error" in r[t] else
                                                  ("n/a" if r[t].get("params") is None else
                                                   ("✓" if r[t]["params"] == pub else f"{r[t]['params']:,}")))
                                                 for t in tools])
        rows_time.append([name] + [("-" if r[t].get("seconds_median") is None else f"{r[t]['seconds_median'] * 1e3:,.0f}")
                                   for t in tools])
        ti = r["torchinfo"].get("pass_size_bytes")
        rows_mem.append([name, f"{r['effai']['peak_bytes'] / 2**20:,.2f}",
                         "-" if ti is None else f"{ti / 2**20:,.2f}"])

    lat_runs = {}
    if not a.quick:
        for th in (None, 1):
            lat_runs[f"threads={th or 'default'}"] = cli_latency_twice("mobilenet_v2", th)

    r50 = res.get("resnet50", {})
    md = ["## Profile: effai vs fvcore, ptflops, thop, torchinfo, FlopCounterMode",
          "", machine_line(mach), f"Load average at the start: {load0:.1f} on 2 cores. Script: `benchmarks/profile_peers.py`.", "",
          "**MACs (millions)** — ✓ within 1% of the reference (hand count, or the paper's published MACs "
          "for zoo models; fvcore's 'flops' are MACs; FlopCounterMode's FLOPs halved):", "",
          table(["model", "reference"] + tools, rows_macs), "",
          "**Params** — ✓ equal to the reference (published, or effai's unique-tensor count):", "",
          table(["model", "reference"] + tools, rows_params), "",
          "**Time to count (ms, median of interleaved rounds, after one warm-up round)**:", "",
          table(["model"] + tools, rows_time), ""]
    if r50:
        e, f = r50["effai"]["seconds_median"], r50["fvcore"]["seconds_median"]
        md += [f"ResNet-50 (counts + peak memory, no latency): effai {e * 1e3:.0f} ms vs fvcore {f * 1e3:.0f} ms "
               f"({f / e:.1f}x). The very first call in a process also pays torch's one-time import of "
               "`torch._dynamo`, triggered by any TorchDispatchMode (FlopCounterMode pays it too); the "
               "warm-up round absorbs it.", ""]
    md += ["**Memory (MiB)**: effai's peak activation memory (tensor liveness over the executed graph, batch 1) "
           "against torchinfo's 'forward/backward pass size' (the sum of every module's output, doubled for "
           "backward): not a peak, and not what inference needs.", "",
           table(["model", "effai peak activations", "torchinfo pass size"], rows_mem), ""]
    if lat_runs:
        lrows = []
        for k, runs in lat_runs.items():
            ok = [x for x in runs if "p50_ms" in x]

            def diff(key, ok=ok):
                return f"{max(x[key] for x in ok) / min(x[key] for x in ok) - 1:.1%}" if len(ok) == 2 else "-"

            lrows.append([k] + [f"{x['p50_ms']:.2f} / {x['cpu_p50_ms']:.2f} (IQR {x['iqr_ms']:.2f}, n={x['repeats']}, "
                                f"load {x['load_avg']}, {x['wall_s']:.1f} s)" if "p50_ms" in x
                                else x.get("error", "")[-80:] for x in runs]
                         + [diff("p50_ms"), diff("cpu_p50_ms")])
        md += ["**`effai profile mobilenet_v2 --json`, run twice** (torch eager, batch 1): wall p50 / process "
               "CPU-time p50 in ms (IQR, repeats, 1-min load average at the start, CLI wall time), and how far "
               "apart the two runs are:", "",
               table(["threads", "run 1", "run 2", "wall p50 difference", "CPU p50 difference"], lrows), "",
               "On this shared 2-core machine the wall-clock p50 depends on what else is running: with 2 threads "
               "an OpenMP region waits for a descheduled thread, so calls take up to 100x longer under load. "
               "The profile records the load average and flags `contended`; the CPU-time p50 (1 thread) is "
               "the reproducible number there.", ""]
    md += ["**Where each tool is off by more than 1% from the reference** (from the table above):", ""]
    for tool in tools:
        off = []
        for name, (_, _, ref) in models.items():
            x = res[name][tool]
            if "error" in x:
                off.append(f"{name} (error: {x['error'][:60]})")
            elif ref["ref"] and abs(x["macs"] / ref["ref"] - 1) > 0.01:
                off.append(f"{name} ({x['macs'] / ref['ref'] - 1:+.0%})")
        extra = ""
        if tool == "effai":
            unc = {n: res[n]["effai"]["uncounted"] for n in models if res[n]["effai"].get("uncounted")}
            extra = f"; uncounted ops named: {unc}" if unc else "; no uncounted ops"
        if tool == "fvcore":
            sk = sorted({op for n in models for op in res[n]["fvcore"].get("skipped", [])})
            extra = f"; ops it skipped (counted as 0): {', '.join(sk)}" if sk else ""
        md.append(f"- {tool}: " + ("; ".join(off) if off else "agrees everywhere") + extra)
    md += ["", "Causes: fvcore and FlopCounterMode have no formula for the CPU attention kernel "
           "(`_scaled_dot_product_flash_attention_for_cpu`), so attention counts as 0; thop and ptflops' pytorch "
           "backend use module hooks, so functional calls (`F.conv2d`, `@`) are invisible to them; thop and "
           "torchinfo use the weight shape of `ConvTranspose2d` as if it were a forward conv; torchinfo counts "
           "MACs only for modules with parameters; fvcore, ptflops and thop fold some of batch-norm, activations, "
           "pooling and biases into their MAC totals (MobileNets +5-11%, SqueezeNet up to +74%), where effai "
           "reports them separately as elementwise FLOPs. effai counts at the aten level, extends torch's formula "
           "table where it misses ops, and names any op it cannot count (`Profile.uncounted`)."]
    data = {"machine": mach, "load_avg_start": load0, "rounds": rounds, "results": res, "cli_latency": lat_runs,
            "references": {k: v[2] for k, v in models.items()}}
    write_results("profile_peers", data, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
