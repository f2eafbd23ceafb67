"""A local Ray cluster for the tests of ``generation.engine: ray`` (two CPUs, no dashboard). Without
Ray those tests skip, except under CI, where the `test` extra installs it and they must run."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent


def need_ray() -> Any:
    """The ``ray`` module, or skip (fail under CI) when it is not installed."""
    if os.environ.get("CI"):
        try:
            import ray
        except ImportError:
            pytest.fail("ray missing: pip install -e '.[test]'")
        return ray
    return pytest.importorskip("ray", reason="ray missing: pip install -e '.[test]' (or '.[ray]')")


@contextlib.contextmanager
def local_cluster(cpus: int = 2) -> Iterator[Any]:
    """A Ray cluster on this machine alone, started for the block and shut down after it. Its
    workers import the tests' own modules (the scripted backends) from this folder."""
    ray = need_ray()
    if ray.is_initialized():
        ray.shutdown()
    here = os.getcwd()
    os.chdir(TESTS)  # Ray puts the driver's working directory on its workers' sys.path
    try:
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    finally:
        os.chdir(here)
    try:
        yield ray
    finally:
        ray.shutdown()
