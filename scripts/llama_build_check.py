"""Exit 0 when the installed llama-cpp-python's CPU build fits this machine, 1 (with the reason on
stderr) when it must be rebuilt here: a build for instructions this CPU lacks (a wheel built on
another machine), or one with llama.cpp's AMX kernels, whose matrix multiplication crashes on some
AMX machines (ggml-org/llama.cpp#20824). Run by scripts/setup.sh after installing."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

#: llama.cpp's system-info feature name -> the /proc/cpuinfo flag it needs.
FLAGS = {"AVX": "avx", "AVX2": "avx2", "AVX_VNNI": "avx_vnni", "F16C": "f16c", "FMA": "fma", "BMI2": "bmi2",
         "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni",
         "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8"}


def built_features(info: str) -> set[str]:
    """The features a llama.cpp build uses, from ``llama_print_system_info()``."""
    return {name.strip() for name, _, value in (part.partition("=") for part in info.split("|"))
            if value.strip() == "1"}


def cpu_flags() -> set[str] | None:
    """This CPU's flags (Linux), or None where /proc/cpuinfo does not say."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None


def problem(info: str, flags: set[str] | None) -> str | None:
    """Why this build must be rebuilt here, or None."""
    features = built_features(info)
    if "AMX_INT8" in features:
        return "it uses llama.cpp's AMX kernels, which crash on some AMX machines (ggml-org/llama.cpp#20824)"
    if flags is not None:
        missing = sorted(name for name, flag in FLAGS.items() if name in features and flag not in flags)
        if missing:
            return f"it was built for CPU features this machine lacks: {', '.join(missing)}"
    return None


def main() -> int:
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    reason = problem(info, cpu_flags() if platform.machine() in ("x86_64", "AMD64") else None)
    if reason:
        print(f"llama-cpp-python {llama_cpp.__version__} must be rebuilt for this machine: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
