"""`just regen --check`: every committed generated file (mvx/isa/archdata/*.py,
mvx/mechanics/native/mvx_tables.h, tests/golden/) is what the generators write today, and a stale one is named on one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPILERS = ("gcc", "aarch64-linux-gnu-gcc")


def _need_compilers():
    missing = [c for c in COMPILERS if shutil.which(c) is None]
    if missing:
        pytest.fail(f"{' '.join(missing)} missing: run scripts/setup.sh")


def test_regen_check_is_diff_free():
    _need_compilers()
    if shutil.which("just"):
        cmd = ["just", "--justfile", str(ROOT / "Justfile"), "--set", "python", sys.executable,
               "regen", "--check"]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    else:  # what the recipe runs
        res = None
        for script in ("gen_archdata.py", "gen_ctables.py", "gen_golden.py"):
            res = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--check"], cwd=ROOT,
                                 capture_output=True, text=True, check=False)
            if res.returncode:
                break
    assert res.returncode == 0, res.stderr


def test_ctables_check_names_the_stale_header(tmp_path):
    stale = tmp_path / "mvx_tables.h"
    text = (ROOT / "mvx" / "mechanics" / "native" / "mvx_tables.h").read_text()
    stale.write_text(text.replace('"read",', '"raed",', 1))
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_ctables.py"), "--check", "--out", str(stale)],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "mvx_tables.h" in lines[0] and "out of date" in lines[0]
