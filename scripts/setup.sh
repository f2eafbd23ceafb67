#!/usr/bin/env bash
# Sets up raq in ./.venv and puts the offline demo models into ./models (sha256 checked).
# llama-cpp-python builds from source the first time (several minutes on 2 cores).
# Usage: bash scripts/setup.sh [--test]   (--test adds the test dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
extras=""
if [ "${1:-}" = "--test" ]; then extras="[test]"; fi

if [ ! -x .venv/bin/python ]; then "$python" -m venv .venv; fi
.venv/bin/python -m pip install --quiet --upgrade pip
echo "setup: installing raq${extras} and its dependencies (llama-cpp-python may build from source)"
# llama.cpp is built for this CPU, without its AMX kernels (they crash on some AMX machines:
# ggml-org/llama.cpp#20824); the flags only matter on x86-64
default_cmake="-DLLAVA_BUILD=OFF"
if [ "$(uname -m)" = "x86_64" ]; then
  no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  default_cmake="$default_cmake -DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'"
fi
export CMAKE_ARGS="${CMAKE_ARGS:-$default_cmake}"
.venv/bin/python -m pip install --quiet -e ".${extras}"
# pip may take a wheel it built before, on another machine or with other flags: check that the
# build fits this CPU, and build it here if not
if ! .venv/bin/python scripts/llama_build_check.py; then
  version=$(.venv/bin/python -c "import llama_cpp; print(llama_cpp.__version__)")
  echo "setup: building llama-cpp-python $version from source for this machine (several minutes)"
  .venv/bin/python -m pip cache remove llama_cpp_python >/dev/null 2>&1 || true  # the unfit wheel
  .venv/bin/python -m pip install --quiet --force-reinstall --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python[server]==$version"
  .venv/bin/python scripts/llama_build_check.py
fi
echo "setup: fetching the demo models into models/"
.venv/bin/python -m raq models fetch --demo
