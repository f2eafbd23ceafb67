"""scripts/llama_build_check.py: when setup must build llama-cpp-python on this machine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "llama_build_check.py"
spec = importlib.util.spec_from_file_location("llama_build_check", SCRIPT)
assert spec is not None and spec.loader is not None
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)

AVX2_BUILD = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 0 | OPENMP = 1 | "
AMX_BUILD = "CPU : AVX = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | REPACK = 1 | "
EPYC = {"avx", "avx2", "f16c", "fma", "bmi2", "sse3"}
XEON = EPYC | {"avx512f", "avx512_vnni", "amx_int8", "amx_tile"}


def test_the_features_a_build_uses_are_read_from_its_system_info() -> None:
    assert check.built_features(AVX2_BUILD) >= {"AVX", "AVX2", "FMA", "OPENMP"}
    assert "AVX512" not in check.built_features(AVX2_BUILD)


def test_a_build_that_fits_the_cpu_is_kept() -> None:
    assert check.problem(AVX2_BUILD, EPYC) is None
    assert check.problem(AVX2_BUILD, XEON) is None
    assert check.problem(AVX2_BUILD, None) is None  # no /proc/cpuinfo: nothing to compare


def test_a_build_for_features_the_cpu_lacks_is_rebuilt() -> None:
    reason = check.problem(AVX2_BUILD.replace("AVX512 = 0", "AVX512 = 1"), EPYC)
    assert reason is not None and "AVX512" in reason


def test_a_build_with_amx_kernels_is_rebuilt_even_where_the_cpu_has_amx() -> None:
    reason = check.problem(AMX_BUILD, XEON)
    assert reason is not None and "AMX" in reason and "20824" in reason


def test_setup_builds_without_amx_and_checks_the_build() -> None:
    setup = (SCRIPT.parent / "setup.sh").read_text()
    assert "-mno-amx-int8" in setup and "scripts/llama_build_check.py" in setup
