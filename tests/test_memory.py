"""The peak resident memory of a block of work (raq.memory), both ways it is measured: the kernel's
peak, reset before the block, and a sampling thread where that reset is refused."""

from __future__ import annotations

import gc
import time

import pytest

from raq import memory
from raq.memory import PeakMemory, rss_mib

MIB = 2**20


def hold(mib: int, seconds: float = 0.0) -> int:
    """Allocate ``mib`` MiB, touch every page, keep it ``seconds``, free it; a checksum."""
    block = bytearray(mib * MIB)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    time.sleep(seconds)
    total = sum(block[::4096])
    del block
    return total


def test_the_rss_is_read() -> None:
    now = rss_mib()
    assert now is not None and now > 10


def test_the_kernel_peak_covers_memory_held_and_freed_inside_the_block() -> None:
    with PeakMemory() as peak:
        assert hold(160) == 160 * MIB // 4096
    record = peak.record()
    if not record["method"].startswith("kernel"):
        pytest.skip(f"this system cannot reset its peak RSS: {record['method']}")
    assert record["added_rss_mib"] >= 150
    assert record["peak_rss_mib"] >= record["rss_before_mib"] + 150


def test_the_peak_is_reset_for_each_block() -> None:
    with PeakMemory():
        hold(160)
    with PeakMemory() as small:
        hold(8)
    record = small.record()
    if not record["method"].startswith("kernel"):
        pytest.skip(f"this system cannot reset its peak RSS: {record['method']}")
    assert record["added_rss_mib"] < 100  # the first block's 160 MiB is not counted again


def test_sampling_is_the_fallback_where_the_peak_cannot_be_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_reset_peak", lambda: False)
    with PeakMemory() as peak:
        hold(160, seconds=10 * memory.SAMPLE_S)
    record = peak.record()
    assert record["method"].startswith("RSS sampled")
    assert record["added_rss_mib"] >= 150
    assert peak._thread is not None and not peak._thread.is_alive()


def test_garbage_left_before_the_block_is_collected_first_and_does_not_hide_the_block_s_memory() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self
            self.data = bytearray(200 * MIB)
            for offset in range(0, len(self.data), 4096):
                self.data[offset] = 1

    Cycle()  # unreachable, freed only by the cyclic collector
    with PeakMemory() as peak:
        gc.collect()  # as the collector may run at any allocation inside the block
        hold(60)
    record = peak.record()
    if not record["method"].startswith("kernel"):
        pytest.skip(f"this system cannot reset its peak RSS: {record['method']}")
    assert record["added_rss_mib"] >= 55


def test_stopping_twice_keeps_the_first_figure_and_nothing_measurable_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with PeakMemory() as peak:
        hold(64)
        peak.stop()
        first = peak.record()
        hold(128)
    assert peak.record() == first
    monkeypatch.setattr(memory, "_reset_peak", lambda: False)
    monkeypatch.setattr(memory, "_sampler", lambda: None)
    monkeypatch.setattr(memory, "_status_kib", lambda field, status=None: None)
    with PeakMemory() as blind:
        hold(8)
    record = blind.record()
    assert record["peak_rss_mib"] is None and record["added_rss_mib"] is None
    assert record["method"].startswith("not measured")
