"""`import raq` and `python -m raq --help` stay light: no heavy library is imported."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("llama_cpp", "openai", "datasets", "pandas", "scipy", "seaborn", "matplotlib", "huggingface_hub")


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_raq_imports_no_heavy_library():
    assert not imported_after("import raq") & set(HEAVY)


def test_cli_help_imports_no_heavy_library():
    loaded = imported_after("import contextlib, io\nfrom raq.cli import main\n"
                            "with contextlib.redirect_stdout(io.StringIO()):\n"
                            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass")
    assert not loaded & set(HEAVY)


def test_the_cli_answers_help_and_errors_in_one_line():
    done = subprocess.run([sys.executable, "-m", "raq", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "run" in done.stdout and "judge" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "raq", "run", "--config", "no-such.yaml"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("raq: error: no-such.yaml: config file not found")
    assert "Traceback" not in bad.stderr
