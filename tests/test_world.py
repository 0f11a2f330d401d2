"""Each follower its own world (docs/DESIGN.md, "Each variant its own world"): a pid namespace with
the leader's pid, a copy-on-write view of every file system, and the calls on what the program made
itself (files, pipes, socketpairs, eventfds) run in every variant.

variants/src/own_world.c creates a file with O_EXCL, writes and reads it back, renames and deletes
it, writes a mkstemp file and preads it (lighttpd's mod_deflate cache), splices out of its own pipe,
uses a socketpair and an eventfd, and checks its identities: each line must say "ok" under mvx as
natively. On today's main before this work the first O_EXCL create diverged (the follower saw the
leader's file: EEXIST), the pipe splice hung, and gettid disagreed with the replicated getpid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import mvx
from tests._variants import variant_bin

ROOT = Path(__file__).resolve().parent.parent
MODES = ["hybrid", "seccomp", "ptrace"]
PAIRS = [("x86_64", "i386"), ("i386", "x86_64")]


def run_in(cwd: Path, *args: str, stdin: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvx", *args], input=stdin, capture_output=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


async def run_here(cwd: Path, leader: str, follower: str, program: str, mode: str) -> tuple[mvx.Outcome, bytes]:
    """The program under mvx.open_run in `cwd`: its Outcome and what the leader's program wrote to
    stdout (a memfd: nothing is added to `cwd`)."""
    out = os.memfd_create("stdout")
    try:
        async with mvx.open_run(variant_bin(leader, program), variant_bin(follower, program), mode=mode, cwd=cwd,
                                stdout=out) as run:
            outcome = await run.wait()
        os.lseek(out, 0, os.SEEK_SET)
        return outcome, os.read(out, 1 << 20)
    finally:
        os.close(out)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
async def test_a_program_behaves_in_its_own_world_as_natively(leader, follower, mode, tmp_path):
    native = await trio.run_process([variant_bin(leader, "own_world")], capture_stdout=True, cwd=tmp_path, check=False)
    assert native.returncode == 0, native.stdout.decode()
    assert sorted(os.listdir(tmp_path)) == []
    outcome, stdout = await run_here(tmp_path, leader, follower, "own_world", mode)
    assert outcome.exit_code == 0, (outcome, stdout.decode())
    assert stdout == native.stdout  # every check "ok", in the same order
    assert outcome.divergence is None
    assert sorted(os.listdir(tmp_path)) == []  # what the leader made and deleted is gone; nothing of the follower's


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
async def test_an_fd_passed_to_itself_is_of_the_world_the_sent_one_was(leader, follower, mode, tmp_path):
    """variants/src/scm_world.c passes fds to itself over its own socketpair (SCM_RIGHTS): a pipe end
    closed before the receive, one received twice (MSG_PEEK), an end of another socketpair are of
    its own world (written in every variant: each reads them back, then EOF); its stdout, sent with a
    pipe end in one message, and a /proc file stay the leader's (written once, read through the
    leader), in the leader's and the follower's shadow alike. On main before this the follower's
    shadow missed fds whose buffer was reused before the monitor read it (it read the running
    variant's memory), took kinds for world (the received stdout: a pipe in the leader, /dev/null in
    the follower) and never a socketpair end."""
    native = await trio.run_process([variant_bin(leader, "scm_world")], capture_stdout=True, cwd=tmp_path, check=False)
    assert native.returncode == 0, native.stdout.decode()
    outcome, stdout = await run_here(tmp_path, leader, follower, "scm_world", mode)
    assert outcome.exit_code == 0, (outcome, stdout.decode())
    assert stdout == native.stdout  # the line through the received stdout once, every check "ok"
    assert outcome.divergence is None


@pytest.mark.parametrize("mode", MODES)
def test_nothing_of_a_followers_world_outlives_a_divergence(mode, tmp_path):
    """A follower killed at a divergence takes its world with it: the namespaces' maker and its
    pid 1 (forks of the follower's monitor) are gone when `mvx run` returns."""
    marker = f"mvx-world-{mode}-{os.getpid()}"
    r = run_in(tmp_path, "run", "--mode", mode, "--timeout", "2", "--leader", f"{variant_bin('x86_64', 'diverge')} hang",
               "--follower", f"{variant_bin('i386', 'diverge')} hang {marker}", stdin=b"x", timeout=60)
    assert r.returncode == 70, r.stderr.decode()
    assert b"DIVERGENCE (timeout)" in r.stderr
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False).stdout
    assert [ln for ln in out.splitlines() if "pgrep" not in ln] == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_the_program_sees_nothing_of_mvx(leader, follower, mode, tmp_path):
    """variants/src/self_view.c prints its prctl state (parent-death signal, no_new_privs...), open
    fds, rlimits, environment, signal mask and dispositions, umask: under mvx what a native run
    prints. No LANG or LC_*: Python would add LC_CTYPE=C.UTF-8 (PEP 538) to what mvx passes on."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    # as a shell would start it: no signal blocked (this pytest process may block SIGCHLD: importing
    # mvx.mechanics.engine does)
    native = subprocess.run([variant_bin(leader, "self_view")], capture_output=True, env=env, cwd=tmp_path,
                            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, set()), check=False)
    assert native.returncode == 0
    r = subprocess.run([sys.executable, "-m", "mvx", "run", "--mode", mode, "--leader", variant_bin(leader, "self_view"),
                        "--follower", variant_bin(follower, "self_view")], capture_output=True, env=env,
                       cwd=tmp_path, timeout=60, check=False)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == native.stdout.decode()
