"""mvx record / mvx verify: Debian's amd64 lighttpd recorded under a short wrk load, its i386 build
verified against the recording offline, and a changed docroot file caught at the response it
changes; damaged, truncated and foreign files refused in one line."""

from __future__ import annotations

import json
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from _variants import ROOT, free_port, variant_bin

from mvx.demo import lighttpd
from mvx.recording import MAGIC

DIVERGENCE_EXIT = 70


def mvx(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvx", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env, check=False, stdin=subprocess.DEVNULL)


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the recorded server did not come up: {proc.communicate()[1]}")
            time.sleep(0.05)


def get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def leftovers(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False).stdout
    return [ln for ln in out.splitlines() if "pgrep" not in ln]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """amd64 lighttpd recorded under a 1 s wrk load (the mixed paths) and a GET of /dir/a.txt."""
    root = tmp_path_factory.mktemp("record")
    site = lighttpd.make_site(root / "site", free_port())
    out = root / "lighttpd.mvxr"
    proc = subprocess.Popen([sys.executable, "-m", "mvx", "record", "--out", str(out), "--",
                             *lighttpd.argv("x86_64"), "-D", "-f", str(site.conf)], cwd=ROOT, env=lighttpd.env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(site.port, proc)
        r = subprocess.run(["wrk", "-t1", "-c2", "-d1s", "-s", str(ROOT / "tests" / "data" / "mixed.lua"),
                            f"http://127.0.0.1:{site.port}/"], capture_output=True, text=True, timeout=60, check=False)
        m = re.search(r"mixed: total=(\d+) bad=(\d+) errors=(\d+)", r.stdout)
        assert m and int(m.group(1)) > 100 and m.group(2) == "0", r.stdout + r.stderr
        assert get(site.port, "/dir/a.txt").endswith(b"\r\n\r\nfile a\n")
        proc.send_signal(signal.SIGTERM)  # passed to lighttpd: it ends cleanly, the recording with it
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # lighttpd's own status, which `mvx record` passes on: its graceful end, 0, or 1 when a connection
    # was still closing at the signal (wrk's last ones may be)
    assert proc.returncode in (0, 1) and "synced calls of" in err, (proc.returncode, err)
    calls = int(re.search(r"recorded (\d+) synced calls", err).group(1))
    assert calls > 1000, err
    return site, out, calls


def verify(out: Path, site, arch: str = "i386", *extra: str) -> subprocess.CompletedProcess:
    return mvx("verify", str(out), *extra, "--", *lighttpd.argv(arch), "-D", "-f", str(site.conf), env=lighttpd.env())


@pytest.mark.slow
def test_the_i386_build_verifies_against_the_amd64_recording(recorded):
    site, out, calls = recorded
    r = verify(out, site)
    assert r.returncode == 0, r.stderr
    assert f"verified {calls} synced calls: the program ended as recorded (exit 0)" in r.stderr
    assert "DIVERGENCE" not in r.stderr
    assert not leftovers(str(site.conf))


@pytest.mark.slow
def test_a_changed_docroot_file_is_caught_at_its_response(recorded, tmp_path):
    site, out, _ = recorded
    a = site.docroot / "dir" / "a.txt"
    original = a.read_bytes()
    a.write_bytes(b"file A\n")  # same length: the response's bytes (and its ETag) differ
    try:
        r = verify(out, site, "i386", "--mode", "seccomp")
    finally:
        a.write_bytes(original)
    assert r.returncode == DIVERGENCE_EXIT, r.stderr
    m = re.search(r"DIVERGENCE \((\w+)\) at synced call #(\d+)", r.stderr)
    assert m, r.stderr
    assert "DIVERGENCE from the recording at synced call #" + m.group(2) in r.stderr
    block = r.stderr.split("DIVERGENCE", 1)[1].split("\n  (detected", 1)[0]
    # the first response of /dir/a.txt: its headers already differ (the file's ETag)
    assert m.group(1) == "arguments" and "leader:   writev(" in block and "ETag: " in block, r.stderr
    assert not leftovers(str(site.conf))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bad_recordings_are_one_line_errors(tmp_path):
    """A foreign, truncated, damaged or other-protocol file: exit 2, one line, nothing started."""
    epoll = variant_bin("i386", "epoll_server")
    port = free_port()
    rec = tmp_path / "ok.mvxr"
    proc = subprocess.Popen([sys.executable, "-m", "mvx", "record", "--out", str(rec), "--",
                             variant_bin("x86_64", "epoll_server"), str(port), "1"], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_listening(port, proc)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"hi\n")
        assert s.recv(100) == b"Hi, how are you.\n"
    assert proc.wait(timeout=30) == 0, proc.communicate()[1]
    assert mvx("verify", str(rec), "--", epoll, str(port), "1").returncode == 0
    data = rec.read_bytes()
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    body = len(MAGIC) + 4 + size
    header = json.loads(data[len(MAGIC) + 4:body])
    other = json.dumps({**header, "protocol": 99}).encode()
    stream = zlib.decompress(data[body:])
    cases = {
        "not an mvx recording": _write(tmp_path / "foreign", b"GIF89a" + bytes(64)),
        "truncated (the recording did not end": _write(tmp_path / "cut", data[:body + (len(data) - body) // 2]),
        "damaged (the compressed stream does not inflate)": _write(tmp_path / "flipped", data[:body] + bytes(
            b ^ 0x55 for b in data[body:body + 20]) + data[body + 20:]),
        "damaged (bytes after the last frame)": _write(tmp_path / "tail", data[:body] + zlib.compress(stream + b"\x01")),
        "recorded with protocol version 99": _write(tmp_path / "proto", MAGIC + struct.pack("<I", len(other)) + other
                                                    + data[body:]),
        "No such file or directory": tmp_path / "missing",
    }
    for message, path in cases.items():
        r = mvx("verify", str(path), "--", epoll, str(port), "1", timeout=30)
        assert r.returncode == 2, (message, r.stderr)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (message, r.stderr)
        assert "Traceback" not in r.stderr
    r = mvx("record", "--out", str(tmp_path / "x.mvxr"), "--", "/nonexistent")
    assert r.returncode == 2 and r.stderr.strip() == "mvx: error: /nonexistent: no such file", r.stderr
    assert not leftovers(f"epoll_server {port}")
