"""Write-behind (the default; `--no-write-behind` turns it off; mvx/runtime/outbox.py): under --lockstep sensitive the leader's
monitor answers an output at once and holds its bytes until every follower has checked the same call. These tests
show what that must never change: no byte of a diverging response leaves, responses arrive whole
and in order, a close right after a large response still delivers all of it and then the end of
the stream, and a lost follower stops the output (fail closed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests._variants import free_port, variant_bin
from tests.test_run import DIVERGENCE_EXIT, MODES, ROOT, leftovers, mvx, start_mvx


def http_get(port: int, path: str, timeout: float = 20.0) -> bytes:
    """One HTTP/1.0 request (retrying while the server starts); everything until the server closes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                out = bytearray()
                while chunk := s.recv(1 << 16):
                    out += chunk
                return bytes(out)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        except ConnectionResetError:
            return b""


def serve(tmp_path, files: dict[str, bytes], paths: list[str], *extra, tampered: dict[str, bytes] | None = None,
          write_behind: bool = True):
    """sendfile_http, x86_64 leader and i386 follower, on one docroot (`tampered`: the follower
    runs in a mount namespace where those files have other contents, at the same paths). The
    responses the client got for `paths` (one connection each), the exit status, the stderr."""
    wb = [] if write_behind else ["--no-write-behind"]
    root = tmp_path / "www"
    root.mkdir()
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    port, channel = free_port(), f"127.0.0.1:{free_port()}"
    leader = [variant_bin("x86_64", "sendfile_http"), str(port), str(root), str(len(paths))]
    follower = [variant_bin("i386", "sendfile_http"), str(port), str(root), str(len(paths))]
    if tampered is None:
        proc = start_mvx("run", *wb, *extra, "--timeout", "5", "--leader", " ".join(leader), "--follower",
                         " ".join(follower), "--")
        others = []
    else:
        binds = []
        for rel, data in tampered.items():
            changed = tmp_path / f"tampered-{rel}"
            changed.write_bytes(data)
            binds.append(f"mount --bind {changed} {root / rel}")
        follower_cmd = " ".join([sys.executable, "-m", "mvx", "follower", "--connect", channel, "--insecure",
                                 "--timeout", "5", "--", *follower])
        others = [subprocess.Popen(["unshare", "-m", "sh", "-c", " && ".join([*binds, f"exec {follower_cmd}"])],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
        proc = start_mvx("leader", "--listen", channel, "--insecure", *wb, *extra, "--timeout", "5",
                         "--", *leader)
    try:
        got = [http_get(port, p) for p in paths]
        _, err = proc.communicate(timeout=60)
        for other in others:
            other.communicate(timeout=30)
    finally:
        for p in (proc, *others):
            if p.poll() is None:
                p.kill()
                p.communicate()
    return got, proc.returncode, err.decode(errors="replace")


def body(data: bytes) -> bytes:
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    return rest


LARGE = bytes(range(256)) * (5 << 12)  # 5 MiB: several held items' worth, closed right after


@pytest.mark.parametrize("mode", MODES)
def test_a_close_right_after_a_large_response_delivers_all_then_the_end(tmp_path, mode):
    files = {"big.bin": LARGE, "index.html": b"<p>small</p>\n"}
    got, code, err = serve(tmp_path, files, ["/big.bin", "/", "/big.bin"], "--mode", mode)
    assert code == 0, err
    assert [body(g) for g in got] == [LARGE, b"<p>small</p>\n", LARGE]  # whole, in order, then EOF


def test_no_byte_of_a_diverging_response_leaves(tmp_path):
    """The follower's copy of the file differs in one byte: its sendfile diverges. The header
    before it was the same in both variants (it may leave); not one byte of the body does."""
    tampered = bytearray(LARGE)
    tampered[3 << 20] ^= 1
    got, code, err = serve(tmp_path, {"big.bin": LARGE}, ["/big.bin"], tampered={"big.bin": bytes(tampered)})
    assert code == DIVERGENCE_EXIT, err
    assert "file bytes it sends differ" in err
    head, _, rest = got[0].partition(b"\r\n\r\n")
    assert rest == b"" and (head == b"" or head.startswith(b"HTTP/1.0 200"))


def test_a_response_that_diverges_from_its_first_byte_sends_nothing(tmp_path):
    """Another length: the header itself differs, so the client gets nothing at all."""
    got, code, err = serve(tmp_path, {"index.html": b"hello\n"}, ["/"], tampered={"index.html": b"hello!\n"})
    assert code == DIVERGENCE_EXIT, err
    assert got == [b""]


def test_many_outputs_arrive_whole_and_in_order():
    """stdio_loop writes each line upper-cased: 20,000 writes to a pipe, held and released in order."""
    lines = b"".join(b"line %05d of the stream, held and then released\n" % i for i in range(20000))
    r = mvx("run", "--write-behind", "--leader", variant_bin("x86_64", "stdio_loop"), "--follower",
            variant_bin("i386", "stdio_loop"), "--", stdin=lines, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == lines.upper()


def test_a_diverging_response_under_plain_lockstep_sends_no_body_byte_either(tmp_path):
    """The same check without write-behind (--no-write-behind): the program waits at its sendfile."""
    tampered = bytearray(LARGE)
    tampered[1 << 20] ^= 1
    root = tmp_path / "plain"
    root.mkdir()
    got, code, err = serve(root, {"big.bin": LARGE}, ["/big.bin"], tampered={"big.bin": bytes(tampered)},
                           write_behind=False)
    assert code == DIVERGENCE_EXIT, err
    assert got[0].partition(b"\r\n\r\n")[2] == b""


def test_without_write_behind_the_same_bytes_leave(tmp_path):
    files = {"big.bin": LARGE}
    got, code, err = serve(tmp_path, files, ["/big.bin"], write_behind=False)
    assert code == 0, err
    assert body(got[0]) == LARGE


def test_a_killed_follower_monitor_stops_the_output():
    """Fail closed: once the follower's monitor is gone, nothing the leader's program writes leaves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mvx", "run", "--write-behind", "--leader", variant_bin("x86_64", "stdio_loop"), "--follower",
         variant_bin("i386", "stdio_loop"), "--"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=ROOT)
    try:
        proc.stdin.write(b"first\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"FIRST\n"
        marker = f"mvx follower .*{variant_bin('i386', 'stdio_loop')}"
        monitors = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False).stdout.split()
        assert monitors
        for pid in monitors:
            os.kill(int(pid), signal.SIGKILL)
        try:
            proc.stdin.write(b"second\n")
            proc.stdin.flush()
            proc.stdin.close()
        except BrokenPipeError:
            pass
        proc.stdin = None  # closed: communicate only reads
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == DIVERGENCE_EXIT, err
    assert b"SECOND" not in out
    deadline = time.monotonic() + 5  # a killed variant may stay a zombie until its new parent reaps it
    while (running := [p for p in leftovers(variant_bin("i386", "stdio_loop")) if "<defunct>" not in p]) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running
