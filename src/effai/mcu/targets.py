"""Microcontroller targets: a catalogue entry with an `mcu:` section, mapped to a compiler
setting and the QEMU board that emulates its core."""

from __future__ import annotations

from dataclasses import dataclass

from effai.errors import InputError


@dataclass(frozen=True)
class Core:
    name: str
    gcc_flags: tuple[str, ...]
    qemu_machine: str
    qemu_cpu: str
    flash_origin: int
    ram_origin: int
    cycles_per_instruction: float
    cpi_source: str
    kernels: tuple[str, ...] = ("dsp", "portable")  # the first is the default

    @property
    def default_kernels(self) -> str:
        return self.kernels[0]


# Cycles per instruction for the latency estimate. Cortex-M4 (TRM, instruction timing): ALU, MAC
# (SMLAD, SMULL) and SXTB16 take 1 cycle, loads 2 (1 when pipelined), taken branches 2-4; our
# inner loops are mostly single-cycle MACs and pipelined loads: 1.25. Cortex-M7 dual-issues
# (about 0.7 measured on CoreMark-like code). Cortex-M55: single issue, 1.0. Estimates only.
CORES = {
    "cortex-m4": Core("cortex-m4", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"), "mps2-an386", "cortex-m4",
                      0x00000000, 0x20000000, 1.25, "Cortex-M4 TRM instruction timing: 1-cycle ALU/MAC/SXTB16, 2-cycle loads"
                      " (pipelined back to back), 2-4 cycle taken branches; 1.25 cycles per instruction assumed"),
    "cortex-m7": Core("cortex-m7", ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=soft"), "mps2-an500", "cortex-m7",
                      0x00000000, 0x20000000, 0.7, "Cortex-M7: dual-issue superscalar; 0.7 cycles per instruction assumed"),
    "cortex-m55": Core("cortex-m55", ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=soft"), "mps3-an547", "cortex-m55",
                       0x00000000, 0x20000000, 1.0, "Cortex-M55: single-issue in-order; 1.0 cycle per instruction "
                       "assumed (Helium instructions take 1-2 cycles per 128-bit vector, counted as one)",
                       ("mve", "dsp", "portable")),
}


@dataclass(frozen=True)
class McuTarget:
    name: str
    title: str
    core: Core
    clock_hz: float
    flash_bytes: int
    sram_bytes: int


def mcu_target(name) -> McuTarget:
    """The catalogue target `name` (or a catalogue `Target`, e.g. from your own YAML) as a
    microcontroller effai can build for.

    >>> t = mcu_target("nano33ble"); t.core.qemu_machine, t.flash_bytes, t.sram_bytes
    ('mps2-an386', 1048576, 262144)
    """
    from effai.hardware.catalogue import Target, load_catalogue

    if isinstance(name, McuTarget):
        return name
    cat = load_catalogue()
    t = name if isinstance(name, Target) else cat[name]
    if t.kind != "mcu" or t.mcu is None:
        names = [n for n in cat.targets if cat.targets[n].spec.mcu is not None]
        raise InputError(f"target {name!r} is not a microcontroller effai builds firmware for; use one of: {', '.join(names)}")
    return McuTarget(t.name, t.title, CORES[t.mcu.core], t.mcu.clock.value, int(t.storage.value), int(t.ram.value))


def mcu_target_names() -> list[str]:
    from effai.hardware.catalogue import load_catalogue

    cat = load_catalogue()
    return sorted(n for n, t in cat.targets.items() if t.spec.mcu is not None)
