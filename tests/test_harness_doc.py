"""docs/harness.md stays true: its files (the fenced blocks marked `file=NAME`) are written to a
directory of their own, built with its build script, and its tests run there with pytest, as a
user who copied them would, under every mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from _variants import ROOT

DOC = ROOT / "docs" / "harness.md"


def doc_files() -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^```\w+ file=(\S+)\n(.*?)^```$", DOC.read_text(),
                                                         re.MULTILINE | re.DOTALL)}


def test_the_harness_example_builds_and_passes_under_every_mode(tmp_path):
    files = doc_files()
    assert set(files) == {"echo.c", "build.sh", "pytest.ini", "test_echo.py"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    subprocess.run(["sh", "build.sh"], cwd=tmp_path, check=True, timeout=120)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--mvx-mode", "all"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 passed" in r.stdout, r.stdout
