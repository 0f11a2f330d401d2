"""`mvx trace` as a user runs it: real subprocesses, real output, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _variants import NATIVE_ARCHES, variant_bin

MODES = ["ptrace", "seccomp", "hybrid"]


def mvx(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvx", *args], capture_output=True, timeout=60, check=False, **kw)


@pytest.mark.parametrize("arch", NATIVE_ARCHES)
@pytest.mark.parametrize("mode", MODES)
def test_trace_prints_synced_calls_and_passes_io_through(arch, mode, tmp_path):
    out = tmp_path / "trace.txt"
    r = mvx("trace", "--mode", mode, "-o", str(out), "--", variant_bin(arch, "stdio_loop"), "--exit", "4",
            input=b"abc\nxyz\n")
    assert r.returncode == 4
    assert r.stdout == b"ABC\nXYZ\n"  # the program's own output passes through
    lines = out.read_text().splitlines()
    assert 'read(0, "abc\\nxyz\\n", 4096) = 8' in lines
    assert 'write(1, "ABC\\n", 4) = 4' in lines
    assert 'write(1, "XYZ\\n", 4) = 4' in lines
    assert 'read(0, "", 4096) = 0' in lines
    assert lines[-2:] == ["exit_group(4) = ?", "+++ exited with 4 +++"]


def test_trace_goes_to_stderr_by_default():
    r = mvx("trace", "--only", "write", "--", variant_bin("x86_64", "stdio_loop"), input=b"hi\n")
    assert r.returncode == 0
    assert r.stdout == b"HI\n"
    assert r.stderr.decode().splitlines() == ['write(1, "HI\\n", 3) = 3', "+++ exited with 0 +++"]


@pytest.mark.parametrize("args, message", [
    (["--", "/nonexistent/prog"], "/nonexistent/prog: no such file"),
    (["--", "{tmp}/plain.txt"], "plain.txt: not executable"),
    (["--", "{tmp}/data.bin"], "data.bin: not an ELF file"),
    (["--", "/tmp"], "/tmp: is a directory"),
    (["--"], "no program given"),
    (["--policy", "nope", "--", "/bin/true"], "invalid choice"),
])
def test_bad_input_is_one_line(args, message, tmp_path):
    (tmp_path / "plain.txt").write_text("hello")
    (tmp_path / "data.bin").write_bytes(b"\x00" * 64)
    (tmp_path / "data.bin").chmod(0o755)
    r = mvx("trace", *[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2
    err = r.stderr.decode()
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_foreign_isa_binary_is_one_line():
    r = mvx("trace", "--", variant_bin("aarch64", "stdio_loop"))
    assert r.returncode == 2
    err = r.stderr.decode().strip()
    assert "aarch64 binary" in err and "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_leaves_no_process_behind(mode):
    """SIGINT to the monitor (what Ctrl-C sends) kills the traced program; nothing is orphaned."""
    proc = subprocess.Popen([sys.executable, "-m", "mvx", "trace", "--mode", mode, "--",
                             variant_bin("x86_64", "stdio_loop")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"one\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"ONE\n"  # the variant runs, blocked reading stdin
    children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert len(children) == 1
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    time.sleep(0.1)
    assert not os.path.exists(f"/proc/{children[0]}"), "the variant outlived its monitor"


@pytest.mark.parametrize("mode", MODES)
def test_exec_into_another_isa_is_followed(mode, tmp_path):
    """An x86_64 shell exec's the i386 program: one filter covers both arches, the trace goes on."""
    out = tmp_path / "trace.txt"
    r = mvx("trace", "--mode", mode, "--only", "read,write,execve", "-o", str(out), "--",
            "/bin/sh", "-c", f"exec {variant_bin('i386', 'stdio_loop')}", input=b"abc\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ABC\n"
    lines = out.read_text().splitlines()
    assert any(line.startswith("execve(") and line.endswith(" = 0") for line in lines)
    assert 'read(0, "abc\\n", 4096) = 4' in lines  # made by the i386 program after the exec
    assert 'write(1, "ABC\\n", 4) = 4' in lines


def test_forked_children_do_not_crash_the_monitor(tmp_path):
    """Children are not followed: their calls run natively and are labelled, the parent is traced."""
    out = tmp_path / "trace.txt"
    r = mvx("trace", "--mode", "hybrid", "--only", "write", "-o", str(out), "--",
            "/bin/sh", "-c", "echo one; (echo two); /bin/echo three")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"one\ntwo\nthree\n"
    text = out.read_text()
    assert 'write(1, "one\\n", 4) = 4' in text
    assert "<child process, not followed>" in text


def _trace_epoll_server(arch: str, mode: str, fast: bool, out: Path) -> tuple[set[str], str]:
    """epoll_server under `mvx trace`, two clients one after the other, 20 requests each: the trace's
    lines with what differs from run to run (addresses, ports, pids, random bytes) made equal."""
    import socket

    from _variants import free_port

    port = free_port()
    env = {**os.environ, "MVX_FAST": "1" if fast else "0", "MVX_FAST_STATS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mvx", "trace", "--mode", mode, "-o", str(out), "--",
                             variant_bin(arch, "epoll_server"), str(port), "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        for _ in range(2):
            for _ in range(200):
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                    break
                except OSError:
                    time.sleep(0.05)
            with sock:
                for i in range(20):
                    sock.sendall(b"req %d\n" % i)
                    got = b""
                    while not got.endswith(b"\n"):
                        chunk = sock.recv(64)
                        assert chunk, "the server closed"
                        got += chunk
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    norm = set()
    for line in out.read_text().splitlines():
        line = re.sub(r"0x[0-9a-f]+", "0xA", line)
        line = re.sub(r"htons\(\d+\)", "htons(P)", line)
        if line.startswith(("getpid(", "getrandom(", "getppid(")):
            line = line.split("(")[0]
        if line.startswith("epoll_pwait(") and "[" in line:  # how many events one wait gets is timing
            events = line[line.index("[") + 1:line.rindex("]")]
            norm.update("event " + e for e in re.findall(r"\{[^}]*\}", events))
            line = re.sub(r"\[.*\]", "[E]", line)
            line = re.sub(r"= \d+$", "= N", line)
        norm.add(line)
    return norm, err.decode(errors="replace")


@pytest.mark.parametrize("arch", NATIVE_ARCHES)
@pytest.mark.parametrize("mode", ["seccomp", "hybrid"])
def test_the_c_loop_renders_each_call_as_python_does(arch, mode, tmp_path):
    """`mvx trace` carries the hot calls in C (mvx_trace.c) and renders them there: the same lines as
    the Python path (MVX_FAST=0) renders for the same run of the same program."""
    c_lines, err = _trace_epoll_server(arch, mode, True, tmp_path / "c.txt")
    m = re.search(r"^mvx: trace: (\d+) hot calls carried in C", err, re.MULTILINE)
    assert m and int(m.group(1)) >= 40, err
    py_lines, err = _trace_epoll_server(arch, mode, False, tmp_path / "py.txt")
    assert c_lines == py_lines, (sorted(c_lines - py_lines), sorted(py_lines - c_lines))


C_RENDERED = ("read(", "recvfrom(", "write(", "writev(", "pread64(", "shutdown(", "close(", "accept4(", "epoll_ctl(",
              "epoll_pwait(", "sendfile(", "setsockopt(")


def _shapes(path: Path) -> set[str]:
    """A lighttpd trace's lines of the calls the C loop renders, with their numbers and addresses made
    equal, the lines a full socket buffer makes (EAGAIN, which a run gets or not) and its log's writes
    left out, epoll waits without their events and epoll_ctl without its op and events (which ones a
    run gets is timing; the epoll_server test compares them)."""
    out = set()
    for line in path.read_text().splitlines():
        if "EAGAIN" in line or not line.startswith(C_RENDERED) or line.startswith("write(4,"):
            continue
        line = re.sub(r"0x[0-9a-f]+", "0xA", line)
        if line.startswith("epoll_pwait(") and "[" in line:
            line = re.sub(r"\[.*\]", "[E]", line)
        if line.startswith("epoll_ctl("):  # which changes lighttpd makes, and to which events, is timing too
            line = re.sub(r"EPOLL_CTL_(ADD|MOD)", "EPOLL_CTL_OP", re.sub(r"events=[A-Z|]+", "events=F", line))
        out.add(re.sub(r"\d+", "N", line))
    return out


def _trace_lighttpd(arch: str, fast: bool, out: Path, site_root: Path) -> str:
    import urllib.request

    from _variants import free_port

    from mvx.bench import servers
    from mvx.demo import lighttpd

    srv = servers.get("lighttpd")
    port = free_port()
    srv.setup(site_root, port)
    env = {**os.environ, **lighttpd.env(), "MVX_FAST": "1" if fast else "0", "MVX_FAST_STATS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mvx", "trace", "-o", str(out), "--", *srv.argv(arch, port, site_root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/small.bin", timeout=5) as r:
                    r.read()
                break
            except OSError:
                time.sleep(0.05)
        for name in ["small.bin"] * 5 + ["large.bin"] * 3 + ["missing"]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/{name}", timeout=10) as r:
                    r.read()
            except OSError:
                pass
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            os.kill(int(child), signal.SIGTERM)  # lighttpd's graceful end; the trace then ends with it
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err.decode(errors="replace")


@pytest.mark.parametrize("arch", NATIVE_ARCHES)
def test_the_c_loop_renders_lighttpd_as_python_does(arch, tmp_path):
    """Debian's lighttpd serving small and large files (writev, pread64, sendfile, setsockopt's TCP_CORK,
    shutdown, recv, accept4, epoll): each kind of line the C loop renders is one the Python path renders."""
    from mvx.demo import lighttpd

    if not lighttpd.binary(arch).is_file():
        pytest.skip("Debian's lighttpd is not fetched (just variants)")
    err = _trace_lighttpd(arch, True, tmp_path / "c.txt", tmp_path / "site")
    assert re.search(r"^mvx: trace: \d{2,} hot calls carried in C", err, re.MULTILINE), err
    _trace_lighttpd(arch, False, tmp_path / "py.txt", tmp_path / "site")
    c_shapes, py_shapes = _shapes(tmp_path / "c.txt"), _shapes(tmp_path / "py.txt")
    assert any(s.startswith("sendfile(") for s in c_shapes), sorted(c_shapes)
    assert c_shapes == py_shapes, (sorted(c_shapes - py_shapes), sorted(py_shapes - c_shapes))
