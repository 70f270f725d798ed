"""arm-none-eabi-gcc build of the generated sources: compile, link with the target's flash and
SRAM in the linker script (not fitting is a link error, which is the verdict), and read the
sizes back with arm-none-eabi-size."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from effai.errors import InputError
from effai.mcu.codegen import Sources
from effai.mcu.targets import McuTarget

STACK_BYTES = 2048
# no auto-vectorization: the kernels say which vector instructions they use (and counts stay predictable)
CFLAGS = ("-O2", "-fno-tree-vectorize", "-ffunction-sections", "-fdata-sections", "-ffp-contract=off", "-fno-common", "-std=c11",
          "-Wall", "-Werror")


@dataclass(frozen=True)
class Build:
    elf: Path | None
    fits: bool
    reason: str  # "" when it fits; else the linker's verdict in one line
    flash_bytes: int  # text + data (or what the link needed, when it does not fit)
    sram_bytes: int  # data + bss (arena, stack reservation)
    text: int = 0
    data: int = 0
    bss: int = 0


def toolchain_missing() -> str | None:
    """None when arm-none-eabi-gcc, -size and qemu-system-arm are on PATH, else what is missing."""
    missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm") if shutil.which(t) is None]
    return ", ".join(missing) or None


def require_toolchain() -> None:
    missing = toolchain_missing()
    if missing:
        raise InputError(f"{missing} not found; install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm "
                         "(make test installs them: DEBIAN_PACKAGES in the Makefile)")


def _files(sub: str) -> list[Path]:
    root = resources.files("effai.mcu") / sub
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith((".c", ".h", ".in")))


def _core_flags(target: McuTarget, kernels: str) -> list[str]:
    """Helium intrinsics need the FP/vector register file in the ABI (softfp); other builds stay soft-float."""
    flags = list(target.core.gcc_flags)
    return [f if f != "-mfloat-abi=soft" else "-mfloat-abi=softfp" for f in flags] if kernels == "mve" else flags


def linker_script(target: McuTarget, stack: int = STACK_BYTES) -> str:
    text = (resources.files("effai.mcu") / "runtime" / "link.ld.in").read_text()
    for k, v in {"TARGET": target.name, "FLASH_ORIGIN": hex(target.core.flash_origin), "FLASH_BYTES": target.flash_bytes,
                 "RAM_ORIGIN": hex(target.core.ram_origin), "RAM_BYTES": target.sram_bytes, "STACK_BYTES": stack}.items():
        text = text.replace(f"@{k}@", str(v))
    return text


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def build(src: Sources, target: McuTarget, kernels: str, elf_name: str = "firmware.elf") -> Build:
    """Compile and link; a link that overflows FLASH or RAM returns fits=False with the reason."""
    require_toolchain()
    d = src.dir
    kernel_sources = [p for p in _files("kernels") if p.suffix == ".c"]
    runtime = [p for p in _files("runtime") if p.suffix == ".c"]
    inc = [f"-I{d}", f"-I{Path(str(resources.files('effai.mcu') / 'kernels'))}"]
    variant = [f"-DEFFAI_DSP={int(kernels in ('dsp', 'mve'))}", f"-DEFFAI_MVE={int(kernels == 'mve')}"]
    flags = [*_core_flags(target, kernels), *CFLAGS, *variant, *inc]
    objs = []
    for c in [*src.c_files, *kernel_sources, *runtime, *src.asm_files]:
        o = d / f"{c.stem}.o"
        r = _run(["arm-none-eabi-gcc", *flags, "-c", str(c), "-o", str(o)], d)
        if r.returncode:
            raise RuntimeError(f"arm-none-eabi-gcc failed on {c.name}:\n{r.stderr[-2000:]}")
        objs.append(str(o))
    (d / "link.ld").write_text(linker_script(target))
    elf = d / elf_name
    r = _run(["arm-none-eabi-gcc", *_core_flags(target, kernels), "-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections",
              "-T", str(d / "link.ld"), *objs, "-lgcc", "-o", str(elf)], d)
    if r.returncode:
        over = re.findall(r"region `(\w+)' overflowed by (\d+) bytes", r.stderr)
        if not over:
            raise RuntimeError(f"link failed:\n{r.stderr[-2000:]}")
        need = {region: int(n) for region, n in over}
        reason = "; ".join(f"{'flash' if k == 'FLASH' else 'SRAM'} overflows by {v:,} bytes "
                           f"({(target.flash_bytes if k == 'FLASH' else target.sram_bytes) + v:,} needed, "
                           f"{target.flash_bytes if k == 'FLASH' else target.sram_bytes:,} available)"
                           for k, v in need.items())
        elf.unlink(missing_ok=True)
        return Build(None, False, f"does not fit {target.name}: {reason}", target.flash_bytes + need.get("FLASH", 0),
                     target.sram_bytes + need.get("RAM", 0))
    text, data, bss = size(elf)
    return Build(elf, True, "", text + data, data + bss, text, data, bss)


def size(elf: Path) -> tuple[int, int, int]:
    """(text, data, bss) as `arm-none-eabi-size` (Berkeley format) reports them."""
    out = _run(["arm-none-eabi-size", str(elf)], elf.parent).stdout.splitlines()
    text, data, bss = (int(v) for v in out[1].split()[:3])
    return text, data, bss


def symbol_address(elf: Path, name: str) -> int:
    """Address of a function symbol (Thumb bit cleared)."""
    for line in _run(["arm-none-eabi-nm", str(elf)], elf.parent).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16) & ~1
    raise RuntimeError(f"{elf.name}: no symbol {name}")
