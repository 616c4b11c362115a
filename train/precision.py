"""The CPU trainer's precision: bf16 autocast only where the CPU computes bf16 natively.

Measured on ResNet-18 (32x32 body), one 128-image SGD step: on a 2-core AVX-512 CPU with bf16 instructions,
bf16 autocast was 1.6-1.8x faster than fp32; on a 2-core AVX2 CPU without them, 65 s against 5 s, 13x slower
(oneDNN emulates it). So `${cpu_precision:}` in configs/trainer/cpu.yaml asks the CPU.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from contract.cpu import cpu_flags

# /proc/cpuinfo flags of the instruction sets that compute bf16 (AVX-512 BF16, AMX).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_precision(flags: set[str] | None = None) -> str:
    """Lightning's precision for CPU training on this machine: "bf16-mixed" or "32-true"."""
    return "bf16-mixed" if NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags) else "32-true"


OmegaConf.register_new_resolver("cpu_precision", cpu_precision, replace=True)
