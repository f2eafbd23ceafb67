"""raq: Relative Answer Quality studies of small language models on reading comprehension.

``import raq`` is light: heavy libraries (llama_cpp, openai, datasets, pandas, scipy,
seaborn) are imported only by the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["evaluate", "check_judge", "load_run", "load_config", "RaqError", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .config import load_config
    from .errors import RaqError
    from .pipeline import check_judge, evaluate, load_run


def __getattr__(name: str) -> Any:
    if name in ("evaluate", "check_judge", "load_run"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "load_config":
        from .config import load_config

        return load_config
    if name == "RaqError":
        from .errors import RaqError

        return RaqError
    raise AttributeError(f"module 'raq' has no attribute {name!r}")
