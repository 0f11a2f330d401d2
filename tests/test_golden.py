"""The golden vectors (tests/golden/, scripts/gen_golden.py): the Python encoder, decoder and sync
core reproduce every committed vector byte for byte, and a vector that does not decode is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mvx.core.golden import GoldenError, follow, lead
from mvx.core.protocol import FrameDecoder, encode_batch

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
VECTORS = sorted(GOLDEN.glob("*/*.json"))
PAIRS = {"x86_64-i386", "i386-x86_64", "x86_64-aarch64", "aarch64-x86_64", "i386-aarch64", "aarch64-i386"}
HOT = {"read", "recvfrom", "writev", "sendfile", "epoll_pwait", "accept4", "clock_gettime", "time", "gettimeofday",
       "getrandom", "fstat", "newfstatat", "openat", "pread64", "close", "fcntl", "setsockopt"}


def test_every_pair_and_hot_call_has_a_vector():
    have = {(p.parent.name, p.stem) for p in VECTORS}
    assert have == {(pair, call) for pair in PAIRS for call in HOT}


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_vector(path):
    v = json.loads(path.read_text())
    frame = bytes.fromhex(v["record"])
    assert lead(v["leader"]) == frame  # the encoder, byte for byte
    messages = list(FrameDecoder().feed(frame))
    assert encode_batch(messages) == frame  # the decoder loses nothing
    assert follow(v["follower"], frame, v["leader"]) == v["plan"]


def test_what_the_vectors_show():
    """Spot checks that the vectors say what mvx does: replayed bytes in the follower's own
    layouts, checked outputs answered, fd-creating calls run with their numbers compared."""
    def plan(pair, call):
        return json.loads((GOLDEN / pair / f"{call}.json").read_text())["plan"]

    read = plan("x86_64-i386", "read")
    assert read["action"] == "answer" and bytes.fromhex(read["writes"][0][1]).startswith(b"GET /index.html")
    epoll = plan("x86_64-aarch64", "epoll_pwait")
    assert len(bytes.fromhex(epoll["writes"][0][1])) == 2 * 16  # two 16-byte aarch64 epoll_events
    writev = plan("i386-x86_64", "writev")  # checked before it ran, answered with the leader's count
    assert writev["checked"] == [1] and writev["action"] == "answer" and writev["writes"] == []
    assert plan("aarch64-i386", "openat")["compare_ret"] and plan("aarch64-i386", "openat")["action"] == "run"
    assert len(bytes.fromhex(plan("x86_64-i386", "getrandom")["writes"][0][1])) == 4  # one i386 word
    clock = plan("x86_64-i386", "time")
    assert clock["ret"] == 0 and len(bytes.fromhex(clock["writes"][0][1])) == 16  # an i386 timespec64


def test_regeneration_is_diff_free():
    done = subprocess.run([sys.executable, "scripts/gen_golden.py", "--check"], cwd=ROOT, capture_output=True, check=False,
                          text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("mutate, field", [
    (lambda v: v.__setitem__("record", v["record"][:-6]), "record"),
    (lambda v: v.__setitem__("record", "ff" * 12), "record"),
    (lambda v: v["follower"].__setitem__("memory", {"0xzz": "00"}), "memory"),
    (lambda v: v["follower"].__setitem__("args", ["x"]), "args"),
])
def test_a_broken_vector_is_one_line_naming_the_field(mutate, field):
    v = json.loads((GOLDEN / "x86_64-i386" / "read.json").read_text())
    mutate(v)
    with pytest.raises(GoldenError) as info:
        follow(v["follower"], bytes.fromhex(v["record"]), v["leader"])
    assert field in str(info.value) and "\n" not in str(info.value)
