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
CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" .venv/bin/python -m pip install --quiet -e ".${extras}"
echo "setup: fetching the demo models into models/"
.venv/bin/python -m raq models fetch --demo
