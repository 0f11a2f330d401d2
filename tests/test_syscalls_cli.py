"""`python3 -m mvx syscalls` as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def mvx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvx", "syscalls", *args], cwd=ROOT, capture_output=True, check=False,
                          text=True, timeout=60)


def test_i386_socketcall_entry_is_demultiplexed():
    r = mvx("--arch", "i386", "socketcall")
    assert r.returncode == 0, r.stderr
    assert "socketcall = 102 on i386" in r.stdout and "demultiplexed" in r.stdout
    assert "18 accept4 (4 args) -> accept4(sockfd, addr, addrlen, flags)" in r.stdout
    assert "5 accept (3 args) -> accept4(" in r.stdout
    assert "rbx" in r.stdout and "rcx" in r.stdout


def test_x86_64_open_entry_shows_canonical_openat_and_registers():
    r = mvx("--arch", "x86_64", "open")
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first == "open = 2 on x86_64 (number in orig_rax) -> openat(AT_FDCWD, path, flags, mode)"
    assert "<- arg0 (rdi)" in r.stdout and "Flags(O_)" in r.stdout and "returns Fd in rax" in r.stdout


def test_lookup_by_number_and_aarch64_registers():
    r = mvx("--arch", "aarch64", "56")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("openat = 56 on aarch64 (number in x8)")
    assert "<- arg1 (x1)" in r.stdout


def test_whole_table_one_line_per_syscall():
    from mvx.isa import arch

    r = mvx("--arch", "x86_64")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(arch.get("x86_64").names)
    assert any(ln.split() == ["232", "epoll_wait", "epoll_pwait"] for ln in lines)
    r = mvx("--arch", "i386")
    assert any(ln.split()[:2] == ["102", "socketcall"] and "demultiplexed" in ln for ln in r.stdout.splitlines())


def test_canonical_table_and_entry():
    r = mvx("--canonical")
    assert r.returncode == 0, r.stderr
    assert any(ln.startswith("openat(dirfd: DirFd, path: Path, flags: Flags(O_)") for ln in r.stdout.splitlines())
    r = mvx("--canonical", "epoll_pwait")
    assert r.returncode == 0, r.stderr
    assert "x86_64: epoll_wait(232), epoll_pwait(281)" in r.stdout


@pytest.mark.parametrize("args, msg", [
    (["--arch", "sparc", "open"], "unknown arch"),
    (["--arch", "x86_64", "nosuchcall"], "no syscall 'nosuchcall'"),
    (["--arch", "x86_64", "99999"], "no syscall number 99999"),
    (["--arch", "aarch64", "open"], "no syscall 'open'"),
    (["--canonical", "nosuch"], "no canonical syscall"),
    ([], "--arch"),
])
def test_errors_are_one_line_exit_2(args, msg):
    r = mvx(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert msg in r.stderr


def test_canonical_entry_shows_traits_and_class_per_policy():
    out = mvx("--canonical", "close").stdout
    assert "traits: fd_table_only; follower_runs; ret_not_compared; shadow: close" in out
    assert "policy default: local" in out and "policy seed: retval_only" in out
    read = mvx("--canonical", "read").stdout
    assert "traits: blocks; takes_signals: fd; perform: read" in read
    assert "policy default: replicated (local on the variant's own files, pipes and socketpairs)" in read
    write = mvx("--canonical", "write").stdout
    assert "policy default: checked_output (sensitive on the variant's own files, pipes and socketpairs)" in write
    assert "traits: -" in mvx("--canonical", "getppid").stdout
