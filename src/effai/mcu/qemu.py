"""Run firmware in qemu-system-arm with semihosting (inputs and outputs are files in the run
folder) and count instructions with a small TCG plugin built here with the host's gcc."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from effai.mcu.build import symbol_address
from effai.mcu.targets import McuTarget

TIMEOUT_S = 300


@dataclass(frozen=True)
class Run:
    exit_code: int
    outputs: np.ndarray  # int8 (N, out_bytes)
    stack_bytes: int
    marks: tuple[int, ...]  # instruction counter at each effai_mark() call
    stderr: str


def plugin_path(cache: Path | None = None) -> Path | None:
    """The instruction-counting plugin, compiled once per source version (None without gcc)."""
    src = Path(str(resources.files("effai.mcu") / "plugin" / "insn_count.c"))
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    cache = cache or Path.home() / ".cache" / "effai" / "mcu"
    so = cache / f"insn_count-{digest}.so"
    if not so.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = so.with_suffix(f".{np.random.randint(1 << 30)}.tmp")
        r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", str(src), "-o", str(tmp)], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"building the QEMU plugin failed:\n{r.stderr[-2000:]}")
        tmp.replace(so)
    return so


def run(elf: Path, target: McuTarget, inputs: np.ndarray, out_bytes: int, count: bool = True) -> Run:
    """Run `elf` on the target's QEMU board over int8 `inputs` (N, in_bytes); read back outputs."""
    d = elf.parent
    (d / "inputs.bin").write_bytes(np.ascontiguousarray(inputs, dtype=np.int8).tobytes())
    for f in ("outputs.bin", "stats.txt", "insn_counts.txt"):
        (d / f).unlink(missing_ok=True)
    cmd = ["qemu-system-arm", "-machine", target.core.qemu_machine, "-cpu", target.core.qemu_cpu, "-nographic",
           "-monitor", "none", "-serial", "none", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    so = plugin_path() if count else None
    if so is not None:
        cmd += ["-plugin", f"{so},mark={hex(symbol_address(elf, 'effai_mark'))},out={d / 'insn_counts.txt'}"]
    r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=TIMEOUT_S)
    raw = (d / "outputs.bin").read_bytes() if (d / "outputs.bin").exists() else b""
    outputs = np.frombuffer(raw, dtype=np.int8).reshape(-1, out_bytes)
    stats = (d / "stats.txt").read_text().split() if (d / "stats.txt").exists() else ["0", "0"]
    marks: tuple[int, ...] = ()
    if (d / "insn_counts.txt").exists():
        marks = tuple(int(v) for v in (d / "insn_counts.txt").read_text().split()[2:])
    return Run(r.returncode, outputs, int(stats[1]), marks, r.stderr[-2000:])
