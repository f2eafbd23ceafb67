"""How much memory a model takes while it answers: the process's peak resident set size (RSS).

On Linux the kernel keeps the process's peak RSS (``VmHWM`` in ``/proc/self/status``), and writing
``5`` to ``/proc/self/clear_refs`` resets it to the current RSS, so the peak over one model's load
and answers is exact. Where the reset is refused, or there is no ``/proc``, a thread samples the RSS
every 20 ms (``psutil`` where installed, else ``/proc/self/statm``) and the peak of the samples is
kept: a lower bound that can miss a short spike. Without either, nothing is measured.

``added_rss_mib`` (peak minus the RSS just before the model was loaded) is the model's own share:
weights actually read from its file (llama.cpp maps the file, so only touched pages count), KV cache,
compute buffers and the answering loop's allocations; the Python process raq runs in is left out.
Memory the process frees inside the block lowers the RSS the block's own allocations start from,
so the figure can only be low, never high; cyclic garbage is collected before the block starts.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["PeakMemory", "rss_mib"]

MIB = 2**20
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATM = Path("/proc/self/statm")
SAMPLE_S = 0.02


def _status_kib(field: str, status: Path = _STATUS) -> int | None:
    """A ``kB`` field of a ``/proc/<pid>/status`` file, or None."""
    try:
        for line in status.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _statm_rss_mib() -> float | None:
    try:
        pages = int(_STATM.read_text(encoding="ascii").split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def _sampler() -> Callable[[], float | None] | None:
    """The best way to read the current RSS in MiB here, or None."""
    try:
        import psutil

        process = psutil.Process()
        return lambda: float(process.memory_info().rss) / MIB
    except ImportError:
        pass
    return _statm_rss_mib if _statm_rss_mib() is not None else None


def rss_mib() -> float | None:
    """The process's resident set size now, in MiB (None where it cannot be read)."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib / 1024
    read = _sampler()
    return read() if read is not None else None


def _reset_peak() -> bool:
    """Reset the kernel's peak RSS to the current RSS; whether it worked."""
    if _status_kib("VmHWM") is None:
        return False
    try:
        _CLEAR_REFS.write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


class PeakMemory:
    """A context manager measuring the peak RSS while its body runs; :meth:`record` gives the figures."""

    def __init__(self) -> None:
        self.before_mib: float | None = None
        self.peak_mib: float | None = None
        self.method: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples_peak: float | None = None

    def __enter__(self) -> PeakMemory:
        gc.collect()  # garbage freed inside the block would hide as much of the block's own memory
        self.before_mib = rss_mib()
        if _reset_peak():
            self.method = "kernel peak RSS (VmHWM), reset before loading"
            return self
        read = _sampler()
        if read is None:
            return self
        self.method = f"RSS sampled every {SAMPLE_S * 1000:.0f} ms (a lower bound)"
        self._samples_peak = read()

        def sample() -> None:
            while not self._stop.wait(SAMPLE_S):
                value = read()
                if value is not None:
                    self._samples_peak = max(self._samples_peak or 0.0, value)

        self._thread = threading.Thread(target=sample, name="raq-peak-memory", daemon=True)
        self._thread.start()
        return self

    def peak_now(self) -> float | None:
        """The peak RSS so far, in MiB (the sampled peak where the kernel's cannot be reset)."""
        if self._thread is not None or self.method is None:
            return self._samples_peak
        kib = _status_kib("VmHWM")
        return kib / 1024 if kib is not None else None

    def stop(self) -> None:
        """End the measurement (at the first call; later calls change nothing)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mib = self.peak_now()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def record(self) -> dict[str, Any]:
        """``peak_rss_mib``, ``rss_before_mib``, ``added_rss_mib`` (rounded to 0.1 MiB; None when
        not measured) and the ``method``."""
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        added = (self.peak_mib - self.before_mib if self.peak_mib is not None and self.before_mib is not None
                 else None)
        return {"peak_rss_mib": rounded(self.peak_mib), "rss_before_mib": rounded(self.before_mib),
                "added_rss_mib": rounded(max(added, 0.0)) if added is not None else None,
                "method": self.method or "not measured: the RSS cannot be read on this system"}
