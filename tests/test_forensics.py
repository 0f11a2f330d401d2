"""Forensics on divergence: where each variant was (its call, program counter and mapping, the
symbol there, the code bytes and the top of its stack), read before the variants are killed, in
the report on stderr and in the --log JSON line, for x86_64 and i386 variants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mvx.mechanics.forensics import Forensics
from mvx.runtime.session import _peer_forensics
from tests._variants import variant_bin

ROOT = Path(__file__).resolve().parent.parent
SYSCALL_INSN = {"x86_64": (b"\x0f\x05",), "i386": (b"\xcd\x80", b"\x0f\x34")}  # syscall; int 0x80, sysenter


@pytest.mark.parametrize(("leader", "follower"), [("x86_64", "i386"), ("i386", "x86_64")])
def test_a_divergence_says_where_each_variant_was(tmp_path, leader, follower):
    log = tmp_path / "log.jsonl"
    r = subprocess.run([sys.executable, "-m", "mvx", "run", "--log", str(log), "--leader", variant_bin(leader, "diverge"),
                        "--follower", variant_bin(follower, "diverge"), "--", "bytes"], input=b"hi\n", cwd=ROOT,
                       capture_output=True, timeout=60, check=False)
    err = r.stderr.decode()
    assert r.returncode == 70, err
    [event] = [json.loads(ln) for ln in log.read_text().splitlines() if '"divergence"' in ln]
    seen = event["forensics"]
    assert set(seen) == {"leader", "follower 0"}, event
    for who, arch in (("leader", leader), ("follower 0", follower)):
        f = Forensics.from_json(seen[who])
        assert f.arch == arch and f.call.startswith("write (nr "), f
        # the pc is where the call returns to: right after the syscall instruction, in a file mapping
        assert f.mapping.startswith("/") and "x" in f.mapping.split("(")[-1], f
        cut = f.pc - f.code_at
        assert any(f.code[:cut].endswith(insn) for insn in SYSCALL_INSN[arch]), f.code.hex(" ")
        assert len(f.stack) == 8 and f.sp > 0, f
        assert f"{who.split()[0]} (pid {f.pid}, {arch}) in write (nr " in err, err
    if leader == "x86_64":  # glibc's own symbol for its write stub
        assert "write" in Forensics.from_json(seen["leader"]).symbol, seen["leader"]
    assert "where the variants were:" in err


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"pid": 1}', '{"pid": "x", "arch": 3, "call": null, "stack": 5}'])
def test_what_a_follower_sends_as_forensics_is_dropped_when_malformed(text):
    """A hostile follower's forensics are only rendered, and only when well-formed."""
    f = _peer_forensics(text)
    assert f is None or isinstance(f.lines("follower 0"), list)
