"""Forensics on divergence: where each variant was (its call, program counter and mapping, the
symbol there, the code bytes, the top of its stack and its general-purpose registers), read before
the variants are killed, in the report on stderr and in the --log JSON line, for x86_64 and i386
variants, in every mode: read by the monitor thread that found the divergence, and by the one
another thread stopped for it (the leader of a diverged follower; a follower stopped by its
watchdog)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mvx.mechanics import forensics
from mvx.mechanics.engine import host_arch
from mvx.mechanics.forensics import Forensics
from mvx.runtime.session import _peer_forensics
from tests._variants import variant_bin

ROOT = Path(__file__).resolve().parent.parent
SYSCALL_INSN = {"x86_64": (b"\x0f\x05",), "i386": (b"\xcd\x80", b"\x0f\x34")}  # syscall; int 0x80, sysenter
MODES = ["ptrace", "seccomp", "hybrid"]
# each ISA's registers in the report, in order; the pc, sp and call-number registers among them
REGS = {
    "x86_64": (("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
                "r14", "r15", "rip", "eflags", "orig_rax"), "rip", "rsp", "orig_rax"),
    "i386": (("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags", "orig_eax"),
             "eip", "esp", "orig_eax"),
}


def assert_registers(f: Forensics, err: str) -> None:
    """The registers agree with what /proc/PID/syscall said: the pc and sp, the call's number
    (orig_rax / orig_eax: the number the call was made with); the report shows them."""
    names, pc, sp, nr = REGS[f.arch]
    assert tuple(f.regs) == names and not f.regs_note, f
    assert f.regs[pc] == f.pc and f.regs[sp] == f.sp, f
    assert f.regs[nr] == int(f.call.split("(nr ")[1].rstrip(")")), f
    if f.arch == "i386":
        assert all(v < 1 << 32 for v in f.regs.values()), f
    assert f"{pc} {f.pc:#x}" in err and f"{nr} {f.regs[nr]:#x}" in err, err


def mvx_run(log: Path, mode: str, leader: str, follower: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvx", "run", "--mode", mode, "--log", str(log), *args,
                           "--leader", variant_bin(leader, "diverge"), "--follower", variant_bin(follower, "diverge"),
                           "--", "hang" if "--timeout" in args else "bytes"], input=b"hi\n", cwd=ROOT,
                          capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("write_behind", [False, True], ids=["lockstep", "write-behind"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), [("x86_64", "i386"), ("i386", "x86_64")])
def test_a_divergence_says_where_each_variant_was(tmp_path, leader, follower, mode, write_behind):
    """The follower finds the divergence (its monitor thread reads its variant); the leader's is
    stopped from the session's thread, and read by its monitor thread before it is killed. Under
    plain lockstep the leader waits at the same write; under write-behind (the default) its write
    was answered at once (the bytes held, then dropped) and it waits at its end, for its followers."""
    log = tmp_path / "log.jsonl"
    r = mvx_run(log, mode, leader, follower, *([] if write_behind else ["--no-write-behind"]))
    err = r.stderr.decode()
    assert r.returncode == 70, err
    assert r.stdout == b"", r.stdout  # nothing of the diverging write left
    [event] = [json.loads(ln) for ln in log.read_text().splitlines() if '"divergence"' in ln]
    seen = event["forensics"]
    assert set(seen) == {"leader", "follower 0"}, event
    for who, arch in (("leader", leader), ("follower 0", follower)):
        f = Forensics.from_json(seen[who])
        call = "exit_group" if write_behind and who == "leader" else "write"
        assert f.arch == arch and f.call.startswith(f"{call} (nr "), f
        # the pc is where the call returns to: right after the syscall instruction, in a file mapping
        assert f.mapping.startswith("/") and "x" in f.mapping.split("(")[-1], f
        cut = f.pc - f.code_at
        assert any(f.code[:cut].endswith(insn) for insn in SYSCALL_INSN[arch]), f.code.hex(" ")
        assert len(f.stack) == 8 and f.sp > 0, f
        assert f"{who.split()[0]} (pid {f.pid}, {arch}) in {call} (nr " in err, err
        assert_registers(f, err)
    if leader == "x86_64" and not write_behind:  # glibc's own symbol for its write stub
        assert "write" in Forensics.from_json(seen["leader"]).symbol, seen["leader"]
    assert "where the variants were:" in err


@pytest.mark.parametrize("mode", MODES)
def test_a_follower_stopped_by_its_watchdog_says_where_it_was(tmp_path, mode):
    """The i386 follower sleeps where the leader writes: its watchdog (the session's thread) stops
    it; the monitor thread, woken by the variant's SIGSTOP, reads it in its sleep."""
    log = tmp_path / "log.jsonl"
    r = mvx_run(log, mode, "x86_64", "i386", "--timeout", "1")
    err = r.stderr.decode()
    assert r.returncode == 70, err
    [event] = [json.loads(ln) for ln in log.read_text().splitlines() if '"divergence"' in ln]
    assert event["kind"] == "timeout", event
    f = Forensics.from_json(event["forensics"]["follower 0"])
    assert f.call.startswith(("nanosleep (nr ", "clock_nanosleep (nr ")), f
    assert_registers(f, err)
    assert_registers(Forensics.from_json(event["forensics"]["leader"]), err)


def test_a_running_variant_is_stopped_for_its_registers():
    """A variant in no ptrace stop, running its own code, is brought to one by SIGSTOP for its
    tracer to read: its pc is then in its code, not in a call."""
    child = subprocess.Popen([sys.executable, "-c", "print('looping', flush=True)\nwhile True: pass"],
                             stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"looping\n"  # past its start-up's calls (an mmap, caught once)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    got: list = []

    def tracer() -> None:  # (ptrace answers the thread that attached alone, as a monitor's)
        try:
            if libc.ptrace(16, child.pid, None, None) != 0:  # PTRACE_ATTACH
                raise OSError(ctypes.get_errno(), "PTRACE_ATTACH")
            os.waitpid(child.pid, 0)
            if libc.ptrace(7, child.pid, None, None) != 0:  # PTRACE_CONT: running its own code again
                raise OSError(ctypes.get_errno(), "PTRACE_CONT")
            arch = host_arch()
            regs, note = forensics.registers(child.pid, arch)
            mem = os.open(f"/proc/{child.pid}/mem", os.O_RDONLY)
            try:
                got.append(forensics.capture(child.pid, arch, lambda a, n: os.pread(mem, n, a), regs, note))
            finally:
                os.close(mem)
        except Exception as exc:  # noqa: BLE001 - told to the test's thread
            got.append(exc)

    try:
        t = threading.Thread(target=tracer)
        t.start()
        t.join(30)
    finally:
        # (os.kill, not Popen.kill: Popen's poll may take a ptrace stop for the child's end, and then
        # sends nothing; its parent is its tracer's process too, so a wait may report a stop first)
        os.kill(child.pid, signal.SIGKILL)
        while True:
            try:
                _, status = os.waitpid(child.pid, 0)
            except ChildProcessError:
                break
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                break
        child.returncode = -9
        child.stdout.close()
    [f] = got
    assert isinstance(f, Forensics), f
    names, pc, sp, _ = REGS[f.arch]
    assert f.call == "no call (stopped)" and not f.regs_note, f
    assert tuple(f.regs) == names and f.regs[pc] == f.pc and f.regs[sp] == f.sp, f
    assert f.mapping.startswith("/") and "x" in f.mapping.split("(")[-1], f  # in the interpreter's code
    assert any(line.startswith(f"    regs {names[0]} ") for line in f.lines("leader")), f.lines("leader")


def test_without_python_ptrace_the_report_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "ptrace.binding", None)
    regs, note = forensics.registers(os.getpid(), host_arch())
    assert regs == {} and "python-ptrace is not installed" in note
    f = Forensics(1, "x86_64", "write (nr 1)", 0x1000, 0x2000, regs_note=note)
    assert "    registers: not read: python-ptrace is not installed" in "\n".join(f.lines("leader"))
    assert Forensics.from_json(json.loads(json.dumps(f.as_json()))) == f


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"pid": 1}', '{"pid": "x", "arch": 3, "call": null, "stack": 5}',
                                  '{"pid": 1, "arch": "i386", "call": "x", "regs": {"eax": "0x1", "ebx": 2.5, "ecx": 3}}',
                                  '{"pid": 1, "arch": "i386", "call": "x", "regs": [1], "regs_note": 7}'])
def test_what_a_follower_sends_as_forensics_is_dropped_when_malformed(text):
    """A hostile follower's forensics are only rendered, and only when well-formed."""
    f = _peer_forensics(text)
    assert f is None or isinstance(f.lines("follower 0"), list)
