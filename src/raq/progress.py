"""Progress bars on the terminal (tqdm), off when output is not a terminal or when asked."""

from __future__ import annotations

from typing import Any


def progress_bar(total: int, desc: str, progress: bool | None) -> Any:
    """A tqdm bar of ``total`` questions; ``progress`` None means: only on a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=None if progress is None else not progress,
                dynamic_ncols=True, mininterval=1.0)
