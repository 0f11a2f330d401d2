"""Where the test variants live. A missing variant fails the test with the command that builds it
(never a skip: a test that cannot run must not look like one that passed)."""

from __future__ import annotations

import platform
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ROOT / "build" / "variants"
# What this machine runs natively (and so can trace): an x86_64 kernel runs i386 too.
NATIVE_ARCHES = {"x86_64": ["x86_64", "i386"], "aarch64": ["aarch64"]}.get(platform.machine(), [])


def variant_bin(arch: str, program: str) -> str:
    path = VARIANTS / arch / program
    if not path.is_file():
        pytest.fail(f"missing test variant {path}: run `just variants` (scripts/build_variants.sh)")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
