"""The C hot path builds for every monitor arch: x86_64 here, aarch64 (the arm64 node's monitor)
with Debian's cross compiler. aarch64 code paths cannot run on this machine, but must not rot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parent.parent / "mvx" / "mechanics" / "native"


@pytest.mark.parametrize("compiler", ["gcc", "aarch64-linux-gnu-gcc"])
def test_native_loop_compiles_warning_free(compiler, tmp_path):
    if shutil.which(compiler) is None:
        pytest.fail(f"{compiler} missing: run scripts/setup.sh (Debian gcc / gcc-aarch64-linux-gnu)")
    r = subprocess.run([compiler, "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-O2", "-c",
                        "-I", str(NATIVE), "-o", str(tmp_path / "mvx_native.o"), str(NATIVE / "mvx_native.c")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
