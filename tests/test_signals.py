"""Signals a program sends itself are taken exactly once, where it sends them, in the leader as in
every follower, whatever the mode (docs/DESIGN.md, "Signals").

variants/src/sigself.c sends itself signals (sigqueue of every real-time signal, raise, kill),
reads them from a signalfd, leaves them pending while blocked and takes them with sigtimedwait and
sigwaitinfo. Its output under mvx must be its native output, with no divergence. Before this work
the leader counted some signals twice or handled them late (after later calls), the siginfo check
failed, and the signalfd read hung in hybrid mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests._variants import variant_bin

ROOT = Path(__file__).resolve().parent.parent
MODES = ["hybrid", "seccomp", "ptrace"]
PAIRS = [("x86_64", "i386"), ("i386", "x86_64")]
CASES = ["rt", "raise", "signalfd", "pending", "sigwait", "pipe"]


def native(arch: str, case: str) -> subprocess.CompletedProcess:
    return subprocess.run([variant_bin(arch, "sigself"), case], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=20, check=False)


def under_mvx(mode: str, leader: str, follower: str, case: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvx", "run", "--mode", mode,
                           "--leader", variant_bin(leader, "sigself"), "--follower", variant_bin(follower, "sigself"),
                           "--", case], stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_signal_a_program_sends_itself_is_taken_once_where_it_is_sent(leader, follower, mode, case):
    want = native(leader, case)
    assert want.returncode == 0 and want.stdout.endswith(b"verdict: pass\n"), want.stdout.decode()
    assert native(follower, case).stdout == want.stdout  # the program says the same on every ISA
    r = under_mvx(mode, leader, follower, case)
    err = r.stderr.decode()
    assert "DIVERGENCE" not in err, err
    assert r.stdout.decode() == want.stdout.decode(), err
    assert r.returncode == 0, err


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_signalfd_in_an_epoll_set_is_ready_for_the_variants_own_signal(leader, follower, mode):
    want = native(leader, "sfdepoll")
    assert want.returncode == 0 and want.stdout.endswith(b"verdict: pass\n"), want.stdout.decode()
    r = under_mvx(mode, leader, follower, "sfdepoll")
    err = r.stderr.decode()
    assert "DIVERGENCE" not in err, err
    assert r.stdout.decode() == want.stdout.decode(), err
    assert r.returncode == 0, err


def _maskwait(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


_TAKEN_IN_A_MASKED_WAIT = (
    "a follower's wait with a signal mask is answered from the leader's record, so the mask is never "
    "applied in the follower: the leader's EINTR comes back, but the follower's own pending SIGUSR1 "
    "(raised while blocked, unblocked only by the wait's mask) is not delivered there")


@pytest.mark.parametrize("case", ["ready", pytest.param("taken", marks=pytest.mark.xfail(
    strict=True, reason=_TAKEN_IN_A_MASKED_WAIT))])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_wait_with_its_own_signal_mask_is_the_wait_it_is_natively(leader, follower, mode, case):
    """epoll_pwait, ppoll and pselect with a signal mask other than the one the program blocks.
    A hybrid leader's monitor performs epoll_pwait, but only the variant can apply a mask: the
    filter traps a masked one with RET_TRACE (Traits.trace_when_set), so it runs in the variant and
    its result is learned at its exit stop. Before, it was notified and let run: its result was not
    learned, and the follower diverged ("could not learn this call's result")."""
    want = _maskwait([variant_bin(leader, "maskwait"), case])
    assert want.returncode == 0 and want.stdout.endswith(b"verdict: pass\n"), want.stdout.decode()
    assert _maskwait([variant_bin(follower, "maskwait"), case]).stdout == want.stdout
    r = _maskwait([sys.executable, "-m", "mvx", "run", "--mode", mode, "--leader", variant_bin(leader, "maskwait"),
                   "--follower", variant_bin(follower, "maskwait"), "--", case])
    err = r.stderr.decode()
    assert "DIVERGENCE" not in err, err
    assert r.stdout.decode() == want.stdout.decode(), err
    assert r.returncode == 0, err


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_write_to_a_broken_pipe_kills_every_variant_by_sigpipe(leader, follower, mode):
    """Without a handler SIGPIPE ends the program: in every mode (a hybrid leader's monitor performs
    the write, and the kernel's SIGPIPE went to the monitor: the program ran on with EPIPE)."""
    want = native(leader, "pipekill")
    assert want.returncode == -signal.SIGPIPE
    r = under_mvx(mode, leader, follower, "pipekill")
    err = r.stderr.decode()
    assert "DIVERGENCE" not in err, err
    assert r.stdout == want.stdout, err
    assert r.returncode == 128 + signal.SIGPIPE, err


def _program_under(role: str, binary: str, timeout: float = 20) -> int:
    from tests.test_run import _child_of_monitor

    return _child_of_monitor(role, binary, timeout)


def _outside(argv: list[str], role: str | None) -> tuple[bytes, int, str]:
    """Run `sigself outside` (natively, or under mvx: role "leader"), send its program one SIGUSR1
    once it says ready; its whole output, exit status and stderr."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        ready = proc.stdout.readline()
        pid = proc.pid if role is None else _program_under(role, "sigself")
        os.kill(pid, signal.SIGUSR1)
        out, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return ready + out, proc.returncode, err.decode()


def _same_as_native_with_a_signal_from_outside(leader: str, follower: str, mode: str, case: str) -> None:
    """`sigself CASE` natively and under mvx, each sent one SIGUSR1 once it says ready: the same
    output (ending "verdict: pass"), exit status 0, no divergence."""
    want, status, _ = _outside([variant_bin(leader, "sigself"), case], None)
    assert status == 0 and want.endswith(b"verdict: pass\n"), want.decode()
    got, status, err = _outside([sys.executable, "-m", "mvx", "run", "--mode", mode,
                                 "--leader", variant_bin(leader, "sigself"),
                                 "--follower", variant_bin(follower, "sigself"), "--", case], "leader")
    assert "DIVERGENCE" not in err, err
    assert got.decode() == want.decode(), err
    assert status == 0, err


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_signal_from_outside_blocked_at_the_next_call_is_handled_once_at_the_unblock(leader, follower, mode):
    """SIGUSR1 sent to the leader's program while it has it unblocked is replicated at its next
    synced call (a getpid), by then made with the signal blocked: every variant has it pending and
    handles it when it unblocks it, once. A notified call is not left waiting for an interruption
    that a blocked signal never makes."""
    _same_as_native_with_a_signal_from_outside(leader, follower, mode, "outside")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_signal_from_outside_wakes_a_sleep_in_sigsuspend_in_every_variant(leader, follower, mode):
    """The program sleeps in sigsuspend (the handler has SA_RESTART) until a SIGUSR1 sent to the
    leader's program: the leader takes it in its sleep, and every follower's same call takes it too;
    each fails with EINTR after one handler. Before, the leader's monitor held the signal for a
    synced call that never came: every variant slept on (a timeout)."""
    _same_as_native_with_a_signal_from_outside(leader, follower, mode, "suspend")


@pytest.mark.parametrize("case", ["pause", "alarm"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_an_alarm_ends_a_pause_in_every_variant_alike(leader, follower, mode, case):
    """alarm(1); pause(): the leader's timer fires in its pause, and every variant takes that
    SIGALRM there: with a handler pause fails with EINTR (case "pause"); with SIGALRM's default
    action every variant is killed by it, an agreement, not a divergence (case "alarm")."""
    want = native(leader, case)
    r = under_mvx(mode, leader, follower, case)
    err = r.stderr.decode()
    assert "DIVERGENCE" not in err, err
    assert r.stdout == want.stdout, err
    if case == "alarm":
        assert want.returncode == -signal.SIGALRM
        assert r.returncode == 128 + signal.SIGALRM, err
    else:
        assert want.returncode == 0 and want.stdout.endswith(b"verdict: pass\n"), want.stdout.decode()
        assert r.returncode == 0, err


@pytest.mark.parametrize("case", ["sfdoutside", "waitoutside"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_signal_from_outside_taken_without_a_handler_is_taken_in_every_variant(leader, follower, mode, case):
    """A blocked SIGUSR1 from outside, taken by a signalfd read (after poll says it is there) or by
    sigwaitinfo: no handler runs, so the leader's monitor never sees it arrive. The leader publishes
    what its call took, and each follower sends itself what it lacks before its own call, which
    then takes the same. Before, the follower never had it: its call waited on (a timeout)."""
    _same_as_native_with_a_signal_from_outside(leader, follower, mode, case)
