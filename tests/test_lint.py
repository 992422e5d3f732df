"""The code passes its linter (ruff, line length 120: ``[tool.ruff]`` in pyproject.toml), and the
command-line entry points that pyproject.toml declares resolve to the functions they name."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"ca-book", "ca-train", "ca-evaluate", "ca-reference", "ca-weights"}


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "ca_core", "tests", "benchmarks"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_console_scripts_are_installed_and_callable():
    scripts = {e.name: e for e in entry_points(group="console_scripts") if e.name in SCRIPTS}
    assert set(scripts) == SCRIPTS, "reinstall the package (make env) to register its console scripts"
    for script in scripts.values():
        assert callable(script.load())
