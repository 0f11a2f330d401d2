"""Our syscall tables against what real binaries do: strace -f -n on x86_64 and i386 variants
(and /bin/true, /bin/ls), qemu-aarch64 -strace on the aarch64 variants. Every (number, name)
reported must agree with the arch table and normalize to a known canonical syscall.

A missing variant fails (never skips): build them with scripts/build_variants.sh."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mvx.isa import arch
from mvx.isa import syscalls as S
from mvx.isa.canonical import BytesMemory, RawSyscall, normalize
from mvx.isa.render import render

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ROOT / "build" / "variants"
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"

# strace line with -f -n: "PID [ NR] name(..." or "PID [ NR] <... name resumed>..."
LINE = re.compile(r"^(?:\d+\s+)?\[\s*(\d+)\]\s+(?:<\.\.\.\s+)?([A-Za-z_][A-Za-z0-9_]*)(?:\(|\s+resumed>)")
QEMU_LINE = re.compile(r"^\d+\s+([A-Za-z_][A-Za-z0-9_]*)\(")
QEMU_UNKNOWN = re.compile(r"^\d+\s+Unknown syscall (\d+)")


@pytest.fixture
def variant():
    def find(arch_name: str, program: str) -> str:
        path = VARIANTS / arch_name / program
        if not path.is_file():
            pytest.fail(f"missing test variant {path}: build it with `bash scripts/build_variants.sh`")
        return str(path)

    return find


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} is not installed (scripts/setup.sh installs it)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def strace_run(tmp_path, argv, stdin=b"", extra=()) -> list[str]:
    need("strace")
    out = tmp_path / "strace.out"
    subprocess.run(["strace", "-f", "-n", *extra, "-o", str(out), "--", *argv], input=stdin,
                   capture_output=True, timeout=30, check=False)
    return out.read_text().splitlines()


def check_strace_lines(lines: list[str], arch_name: str) -> list[tuple[int, str]]:
    """(nr, name) pairs of the trace; the tracer's own execve (before the new image runs) is in
    x86_64 numbering, everything after it in `arch_name`'s."""
    seen = []
    current = "x86_64"
    for ln in lines:
        m = LINE.match(ln)
        if not m:
            continue
        nr, name = int(m.group(1)), m.group(2)
        a = arch.get(current)
        ours = a.names.get(nr)
        dm = S.demux_for(a, ours) if ours else None
        if dm is not None and name != ours:
            # strace shows a multiplexer by its sub-call (i386 socketcall -> "socket")
            subs = {sub for sub, _ in dm.table.values()}
            assert name in subs, f"{current}: strace says {nr} is {name}, not a sub-call of {ours}"
            assert S.canonical_of(a, name) in S.canonical_names()
            seen.append((nr, name))
            continue
        assert ours == name, f"{current}: strace says {nr} is {name}, our table: {ours}"
        c = normalize(RawSyscall(current, nr, (0,) * 6))
        assert c.name in S.canonical_names(), (current, nr, name, c.name)
        seen.append((nr, name))
        if name == "execve" and ln.rstrip().endswith("= 0"):
            current = arch_name
    assert seen, "strace reported no syscall"
    return seen


def test_x86_64_true_and_ls(tmp_path):
    seen = check_strace_lines(strace_run(tmp_path, ["/bin/true"]), "x86_64")
    assert {"execve", "openat", "mmap", "exit_group"} <= {n for _, n in seen}
    seen = check_strace_lines(strace_run(tmp_path, ["/bin/ls", "-la", "/"]), "x86_64")
    assert {"getdents64", "write"} <= {n for _, n in seen}


@pytest.mark.parametrize("arch_name", ["x86_64", "i386"])
def test_stdio_loop_under_strace(tmp_path, variant, arch_name):
    lines = strace_run(tmp_path, [variant(arch_name, "stdio_loop")], b"hello\nworld\n")
    seen = check_strace_lines(lines, arch_name)
    names = [n for _, n in seen]
    assert names.count("write") >= 2 and "read" in names
    if arch_name == "i386":
        assert any(n in ("mmap2", "_llseek", "ugetrlimit", "statx", "fstat64") for n in names)


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def drive_epoll_server(port: int, proc: subprocess.Popen, server_pid) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("epoll_server did not start listening")
            time.sleep(0.05)
    with c:
        c.sendall(b"hello\n")
        assert b"Hi, how are you." in c.recv(100)
    time.sleep(0.2)
    os.kill(server_pid(), signal.SIGTERM)
    proc.wait(timeout=20)


@pytest.mark.parametrize("arch_name", ["x86_64", "i386"])
def test_epoll_server_under_strace(tmp_path, variant, arch_name):
    need("strace")
    port = free_port()
    out = tmp_path / "strace.out"
    proc = subprocess.Popen(["strace", "-f", "-n", "-o", str(out), "--", variant(arch_name, "epoll_server"),
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def server_pid():
            kids = children(proc.pid)
            assert kids, "no server process under strace"
            return kids[0]

        drive_epoll_server(port, proc, server_pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seen = check_strace_lines(out.read_text().splitlines(), arch_name)
    canon = {S.canonical_of(arch_name, n) for _, n in seen}
    assert {"socket", "bind", "listen", "accept4", "epoll_ctl", "epoll_pwait", "read", "write"} <= canon


def qemu_lines(tmp_path, argv, stdin=b"", port=None) -> list[str]:
    need("qemu-aarch64")
    cmd = ["qemu-aarch64", "-L", AARCH64_SYSROOT, "-strace", *argv]
    if port is None:
        r = subprocess.run(cmd, input=stdin, capture_output=True, timeout=60, check=False)
        return r.stderr.decode(errors="replace").splitlines()
    log = tmp_path / "qemu.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            drive_epoll_server(port, proc, lambda: proc.pid)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return log.read_text(errors="replace").splitlines()


def check_qemu(lines: list[str]) -> set[str]:
    a = arch.get("aarch64")
    names = set()
    for ln in lines:
        m = QEMU_UNKNOWN.match(ln)
        if m:
            nr = int(m.group(1))
            assert nr in a.names, f"qemu ran aarch64 syscall {nr}, unknown to our table"
            names.add(normalize(RawSyscall("aarch64", nr, (0,) * 6)).name)
            continue
        m = QEMU_LINE.match(ln)
        if not m:
            continue
        name = m.group(1)
        assert name in a.numbers, f"qemu reports aarch64 syscall {name!r}, not in our table"
        c = normalize(RawSyscall("aarch64", a.numbers[name], (0,) * 6))
        assert c.name in S.canonical_names()
        names.add(c.name)
    assert names, "qemu reported no syscall"
    return names


def test_aarch64_stdio_loop_under_qemu(tmp_path, variant):
    names = check_qemu(qemu_lines(tmp_path, [variant("aarch64", "stdio_loop")], b"hello\nworld\n"))
    assert {"openat", "fstatat", "read", "write", "exit_group"} <= names


def test_aarch64_epoll_server_under_qemu(tmp_path, variant):
    port = free_port()
    names = check_qemu(qemu_lines(tmp_path, [variant("aarch64", "epoll_server"), str(port)], port=port))
    assert {"socket", "bind", "listen", "accept4", "epoll_ctl", "epoll_pwait"} <= names


# --- our renders against strace's own lines ---------------------------------------------------------

RAW_LINE = re.compile(r'^\d+\s+\[\s*(\d+)\]\s+(\w+)\((.*)\)\s+= (\S+)')


def _raw_args(text: str) -> list:
    """Split strace -X raw args: ints, and quoted strings kept as str tokens."""
    out: list = []
    for tok in re.findall(r'"(?:[^"\\]|\\.)*"(?:\.\.\.)?|0x[0-9a-f]+|-?\d+', text):
        out.append(tok if tok.startswith('"') else int(tok, 0))
    return out


@pytest.mark.parametrize("arch_name, program", [("x86_64", "/bin/true"), ("i386", "stdio_loop")])
def test_openat_and_close_render_like_strace(tmp_path, variant, arch_name, program):
    argv = [program if program.startswith("/") else variant(arch_name, program)]
    pretty = strace_run(tmp_path, argv, b"x\n", ("-e", "trace=openat,close"))
    raw = strace_run(tmp_path, argv, b"x\n", ("-e", "trace=openat,close", "-X", "raw"))
    pairs = [(p, r) for p, r in zip(pretty, raw) if RAW_LINE.match(r)]
    assert pairs, "no openat/close seen"
    checked = 0
    for p, r in pairs:
        m = RAW_LINE.match(r)
        nr, name, args_text, ret = int(m.group(1)), m.group(2), m.group(3), int(m.group(4), 0)
        mem, regs = BytesMemory(), []
        for i, v in enumerate(_raw_args(args_text)):
            if isinstance(v, str):  # a path: give it an address in our fake memory
                addr = 0x10000 * (i + 1)
                mem.regions[addr] = v[1:-1].encode().decode("unicode_escape").encode("latin-1") + b"\0"
                regs.append(addr)
            else:
                regs.append(v)
        call = normalize(RawSyscall(arch_name, nr, tuple(regs) + (0,) * (6 - len(regs))), mem)
        ours = render(call, ret if ret < 1 << 31 else ret - (1 << 32))
        theirs = re.sub(r"^\d+\s+\[\s*\d+\]\s+", "", p)
        theirs = re.sub(r"\s+=", " =", theirs).replace("O_LARGEFILE|", "")  # we drop O_LARGEFILE
        if name != "openat" or "ENOENT" in theirs or "= 3" in theirs or "close" in theirs:
            assert ours == theirs, (ours, theirs)
            checked += 1
    assert checked >= 2
