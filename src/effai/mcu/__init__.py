"""Microcontroller deployment: an int8 model compiled to C (const weights in flash, one static
arena laid out by a memory planner, a straight-line `model_run()`), built with arm-none-eabi-gcc
for the target's Cortex-M core, run in qemu-system-arm and checked bit for bit against effai's
numpy integer reference; flash and SRAM come from the ELF, instructions from QEMU.

    r = effai.mcu.deploy(model, "nano33ble", out="fw/", input_shape=(1, 49, 10))
    r.bit_exact, r.flash_bytes, r.sram_bytes, r.instructions, r.estimated_latency_ms
"""

from effai.mcu.build import toolchain_missing
from effai.mcu.deploy import DeployResult, LayerResult, deploy
from effai.mcu.targets import mcu_target, mcu_target_names

__all__ = ["DeployResult", "LayerResult", "deploy", "mcu_target", "mcu_target_names", "toolchain_missing"]
