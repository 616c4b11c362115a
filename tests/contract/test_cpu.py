"""The CPU's flags, and the session entries that make onnxruntime compute int8 files exactly on it."""

from __future__ import annotations

from contract.cpu import PRECISE_INT8, cpu_flags, int8_session_entries


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16\nbugs\t\t:\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_x86_without_vnni_gets_the_exact_int8_kernels():
    assert int8_session_entries({"sse2", "avx2", "fma"}, "x86_64") == {PRECISE_INT8: "1"}
    assert int8_session_entries({"avx2", "avx512f", "avx512bw"}, "x86_64") == {PRECISE_INT8: "1"}  # AVX-512, no VNNI
    assert int8_session_entries(set(), "AMD64") == {PRECISE_INT8: "1"}  # flags unknown: exact is the safe side


def test_vnni_cpus_and_other_architectures_keep_the_fast_kernels():
    for vnni in ("avx512_vnni", "avx_vnni", "amx_int8"):
        assert int8_session_entries({"avx2", vnni}, "x86_64") == {}
    assert int8_session_entries(set(), "aarch64") == {}  # onnxruntime's saturating x86 path does not exist there


def test_this_machine_is_judged_from_its_own_flags():
    assert int8_session_entries() == int8_session_entries(cpu_flags())
