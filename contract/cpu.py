"""What this CPU can run, and the onnxruntime session entries an int8 model file needs on it.

The int8 files hold signed int8 weights (per channel, symmetric) and uint8 activations. On x86, onnxruntime's u8 x s8
kernels use VNNI (AVX-512 VNNI, AVX-VNNI, AMX) where the CPU has it; without it they use AVX2's `vpmaddubsw`, which
saturates the sum of two products at 16 bits (255 x 127 x 2 > 32767): the shipped model scored 90.47 % instead of
91.73 % on an AVX2-only host. `session.x64quantprecision` makes onnxruntime shift the weights to uint8 (exactly the
same values) and run its u8 x u8 kernels, which cannot saturate. It does that on VNNI CPUs too, where it cost 3.5x
the throughput (batch 16: 219 against 765 images/s, benchmarks/engines/README.md), so it is set only where needed.
"""

from __future__ import annotations

import platform
from pathlib import Path

# /proc/cpuinfo flags of the instruction sets whose int8 dot products accumulate in 32 bits.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})
PRECISE_INT8 = "session.x64quantprecision"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def int8_session_entries(flags: set[str] | None = None, machine: str | None = None) -> dict[str, str]:
    """Session config entries under which onnxruntime computes an int8 file exactly on this CPU, fastest first:
    none on VNNI CPUs and off x86, the u8 x u8 kernels on x86 without VNNI."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if machine not in X86_MACHINES:
        return {}
    flags = cpu_flags() if flags is None else flags
    return {} if flags & VNNI_FLAGS else {PRECISE_INT8: "1"}


def add_int8_entries(options):
    """Add this CPU's int8 entries to an onnxruntime SessionOptions (typed loosely: contract imports no runtime)."""
    for key, value in int8_session_entries().items():
        options.add_session_config_entry(key, value)
    return options


# How OpenVINO runs a model file wherever the project runs it (the service's ENGINE=openvino, export's golden answers):
# f32 for the float parts. On CPUs with bf16 units OpenVINO would run them in bf16 by default, which moved the logits
# by up to 0.03 and measured no faster (benchmarks/engines/README.md); the int8 convolutions stay int8.
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
