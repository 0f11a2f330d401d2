"""mvx as a package: `pip install .` into a fresh virtual environment compiles the C part at install
(setup.py, cffi), so the installed mvx runs from outside the source tree with no compiler on PATH."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from _variants import ROOT, free_port, variant_bin


def test_an_installed_mvx_runs_without_a_compiler(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT)], capture_output=True, text=True,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    bare = tmp_path / "bin"  # a PATH with a python and nothing else: no gcc, no cc
    bare.mkdir()
    (bare / "python3").write_text(f'#!/bin/sh\nexec {venv}/bin/python "$@"\n')
    (bare / "python3").chmod(0o755)
    env = {"PATH": str(bare), "HOME": str(tmp_path / "home")}
    v = subprocess.run(["python3", "-m", "mvx", "--version"], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=60, check=False, executable=str(bare / "python3"))
    assert v.returncode == 0 and v.stdout.startswith("mvx ") and v.stdout.rstrip().endswith(", installed)"), v
    port = free_port()
    proc = subprocess.Popen([str(bare / "python3"), "-m", "mvx", "run", "--leader", variant_bin("x86_64", "epoll_server"),
                             "--follower", variant_bin("i386", "epoll_server"), "--", str(port), "1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"hi\n")
                    assert s.recv(64) == b"Hi, how are you.\n"
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
                time.sleep(0.05)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert b"DIVERGENCE" not in err
