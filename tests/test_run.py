"""`mvx run`: real variants of two ISAs in step, in every mode and both roles.

Every test runs real binaries (build/variants) under real monitors over real sockets; the
divergence tests use variants/src/diverge.c, whose non-x86_64 builds part ways on purpose at one
point (and agree again with "all", the no-false-alarm twin of each test)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._variants import free_port, variant_bin

ROOT = Path(__file__).resolve().parent.parent
MODES = ["hybrid", "seccomp", "ptrace"]
PAIRS = [("x86_64", "i386"), ("i386", "x86_64")]
DIVERGENCE_EXIT = 70


def mvx(*args: str, stdin: bytes = b"", timeout: float = 40, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvx", *args], input=stdin, capture_output=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, **(env or {})}, check=False)


def start_mvx(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mvx", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, **(env or {})})


def talk(port: int, data: bytes, timeout: float = 15.0) -> bytes:
    """Connect (retrying while the server starts), send, return the first reply ('' on close)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.sendall(data)
                try:
                    return s.recv(4096)
                except ConnectionResetError:
                    return b""
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def leftovers(marker: str) -> list[str]:
    """Processes whose command line still names `marker` (nothing may outlive mvx)."""
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False).stdout
    return [ln for ln in out.splitlines() if "pgrep" not in ln]


def run_server(leader: str, follower: str, program: str, port: int, requests: list[bytes], *extra: str):
    """Start `mvx run` on a server variant pair, send `requests` (one connection each) and collect
    the replies and the finished process."""
    proc = start_mvx("run", *extra, "--leader", variant_bin(leader, program), "--follower", variant_bin(follower, program),
                     "--", str(port), str(len(requests)))
    replies = []
    try:
        for data in requests:
            replies.append(talk(port, data))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, replies, out.decode(errors="replace"), err.decode(errors="replace")


# ---- serving, every class, every mode, both roles --------------------------------------------------


@pytest.mark.parametrize("policy", ["default", "seed"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("leader, follower", PAIRS)
def test_epoll_server_served_by_leader_and_verified(leader, follower, mode, policy):
    """socket/bind/listen/epoll_create1/epoll_ctl/accept4/epoll_pwait/read/write/close across ISAs."""
    port = free_port()
    code, replies, out, err = run_server(leader, follower, "epoll_server", port, [b"hello\n", b"again\n", b"x\n"],
                                         "--mode", mode, "--policy", policy)
    assert replies == [b"Hi, how are you.\n"] * 3
    assert "DIVERGENCE" not in err, err
    assert code == 0, err
    assert out.count("epoll_server: listening") == 1  # only the leader's write reached the world
    assert not leftovers(f"epoll_server {port}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("leader, follower", PAIRS)
def test_stdin_is_replicated_and_only_the_leader_writes(leader, follower, mode):
    """read (replicated from the leader's stdin; the follower's stdin is /dev/null), getpid,
    socket/close (local, fd numbers compared), write (checked, executed once)."""
    r = mvx("run", "--mode", mode, "--leader", variant_bin(leader, "diverge"), "--follower",
            variant_bin(follower, "diverge"), "--", "same", stdin=b"hi there\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"got: hi there\n"
    assert b"DIVERGENCE" not in r.stderr


@pytest.mark.parametrize("mode", MODES)
def test_stdin_from_a_file_is_the_leaders_input(mode, tmp_path):
    """stdin redirected from a regular file is the leader's world (inherited, not the program's
    own): its reads are replicated, not run locally (a follower's stdin is /dev/null). It was a
    false divergence: "the call is local on the leader, replicated here"."""
    data = tmp_path / "input.txt"
    data.write_bytes(b"from a file\n")
    with data.open("rb") as stdin:
        r = subprocess.run([sys.executable, "-m", "mvx", "run", "--mode", mode, "--leader",
                            variant_bin("x86_64", "diverge"), "--follower", variant_bin("i386", "diverge"), "--", "same"],
                           stdin=stdin, capture_output=True, timeout=40, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"got: from a file\n"


# ---- divergences: each alarm fires, and its twin raises none ------------------------------------------

KINDS = {  # diverge MODE -> the divergence kind reported
    "syscall": "syscall",
    "args": "arguments",
    "bytes": "arguments",
    "exit": "exit",
    "signal": "signal",
    "hang": "timeout",
    "fd": "fd",
    "file": "arguments",
}


def run_diverge(leader: str, follower: str, *args: str, extra=(), log: Path | None = None):
    opts = [*extra, "--timeout", "3"]
    if log:
        opts += ["--log", str(log)]
    return mvx("run", *opts, "--leader", variant_bin(leader, "diverge"), "--follower",
               variant_bin(follower, "diverge"), "--", *args, stdin=b"hi\n")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_divergence_in_the_follower_is_caught(kind, tmp_path):
    log = tmp_path / "log.jsonl"
    r = run_diverge("x86_64", "i386", kind, log=log)
    err = r.stderr.decode()
    assert r.returncode == DIVERGENCE_EXIT, err
    assert f"DIVERGENCE ({KINDS[kind]})" in err
    events = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert [e["kind"] for e in events if e.get("event") == "divergence"] == [KINDS[kind]]
    if kind in ("args", "bytes", "syscall"):
        assert r.stdout == b""  # lockstep: the leader's write never happened
    assert not leftovers("diverge " + kind)


@pytest.mark.parametrize("delay", [0, 0.05, 0.1, 0.3])
def test_signals_while_a_divergence_ends_the_run_do_not_change_its_status(delay):
    """SIGTERMs to `mvx run` right after a divergence is reported (while the monitors and the run
    end, Python's finalization included) leave the divergence's status, never 128+N or 256-N."""
    proc = subprocess.Popen([sys.executable, "-m", "mvx", "run", "--leader", variant_bin("x86_64", "diverge"),
                             "--follower", variant_bin("i386", "diverge"), "--", "bytes"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"hi\n")
        proc.stdin.flush()
        err = b""
        while b"DIVERGENCE" not in err:
            line = proc.stderr.readline()
            assert line, err.decode()
            err += line
        time.sleep(delay)
        for _ in range(3):
            proc.send_signal(signal.SIGTERM)  # (a process already gone is not an error for Popen)
            time.sleep(0.02)
        out, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == DIVERGENCE_EXIT, (err + rest).decode()
    assert out == b""  # the diverging write never happened
    assert not leftovers("diverge bytes")


@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"hang"}))
def test_divergence_in_the_leader_is_caught(kind):
    """The i386 build is the leader and the odd one: what it does first is checked before it acts."""
    r = run_diverge("i386", "x86_64", kind)
    err = r.stderr.decode()
    assert r.returncode == DIVERGENCE_EXIT, err
    assert f"DIVERGENCE ({KINDS[kind]})" in err
    if kind in ("args", "bytes"):
        assert b"got:" not in r.stdout and "got:" not in err.replace("got: hi", "")  # held by lockstep


@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"signal"}))
@pytest.mark.parametrize("leader, follower", PAIRS)
def test_no_false_alarm_when_every_variant_does_the_same(kind, leader, follower):
    r = run_diverge(leader, follower, kind, "all")
    assert b"DIVERGENCE" not in r.stderr, r.stderr
    assert r.returncode == (3 if kind == "exit" else 0), r.stderr


@pytest.mark.parametrize("mode", MODES)
def test_output_divergence_caught_in_every_mode(mode):
    r = run_diverge("x86_64", "i386", "bytes", extra=["--mode", mode])
    assert r.returncode == DIVERGENCE_EXIT
    assert b"differ at byte 1" in r.stderr
    assert r.stdout == b""


def test_alert_reports_and_lets_the_leader_run_on():
    r = run_diverge("x86_64", "i386", "bytes", extra=["--on-divergence", "alert"])
    assert r.returncode == DIVERGENCE_EXIT
    assert b"DIVERGENCE (arguments)" in r.stderr
    assert r.stdout == b"got: hi\n"  # the leader went on and wrote


# ---- the seed's attack ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> bytes:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_attack.py"), variant_bin("x86_64", "vuln_server")],
                       capture_output=True, check=True, timeout=60)
    return r.stdout


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("leader, follower", PAIRS)
def test_attack_caught_before_its_first_effect(leader, follower, mode, payload, tmp_path):
    marker = tmp_path / "pwned"
    port = free_port()
    proc = start_mvx("run", "--mode", mode, "--leader", variant_bin(leader, "vuln_server"), "--follower",
                     variant_bin(follower, "vuln_server"), "--", str(port), env={"MVX_MARKER": str(marker)})
    try:
        assert talk(port, b"hello\n") == b"Hi, how are you.\n"
        talk(port, payload)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == DIVERGENCE_EXIT, err
    assert b"DIVERGENCE" in err
    assert b"PWNED" not in out
    assert not marker.exists()
    assert not leftovers(f"vuln_server {port}")


# ---- the command line -------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["run", "--leader", "build/variants/x86_64/diverge", "--", "same"], "--follower"),
    (["run", "--leader", "/nonexistent", "--follower", "build/variants/i386/diverge"], "/nonexistent: no such file"),
    (["run", "--leader", "build/variants/aarch64/diverge", "--follower", "build/variants/i386/diverge"],
     "an aarch64 binary"),
    (["run", "--leader", "build/variants/x86_64/diverge", "--follower", "build/variants/i386/diverge",
      "--timeout", "-1"], "must be positive"),
    (["run", "--cwd", "/nonexistent", "--leader", "build/variants/x86_64/diverge", "--follower",
      "build/variants/i386/diverge"], "--cwd /nonexistent: not a directory"),
    (["leader", "--", "build/variants/x86_64/diverge"], "needs --listen"),
    (["leader", "--listen", "10.1.2.3:5000", "--insecure", "--", "build/variants/x86_64/diverge"], "loopback"),
    (["follower", "--connect", "nohostport", "--insecure", "--", "build/variants/x86_64/diverge"], "HOST:PORT"),
])
def test_bad_input_is_one_line(args, message):
    r = mvx(*args, timeout=20)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 128 + signal.SIGINT)])
def test_a_signal_to_mvx_reaches_every_variant_at_the_same_point(sig, status):
    """The epoll server leaves its loop on SIGTERM (exit 0) and dies of SIGINT: every variant
    gets the signal before the same synced call, so every variant ends alike and mvx agrees."""
    port = free_port()
    proc = start_mvx("run", "--leader", variant_bin("x86_64", "epoll_server"), "--follower", variant_bin("i386", "epoll_server"),
                     "--", str(port), "0")
    try:
        assert talk(port, b"hello\n") == b"Hi, how are you.\n"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == status, err
    assert b"DIVERGENCE" not in err and b"Traceback" not in err
    assert not leftovers(f"epoll_server {port}")


def _program_pid(port: int, role: str) -> int:
    """The pid of the program under the `mvx leader|follower` monitor serving `port`."""
    return _child_of_monitor(role, f"epoll_server {port}")


@pytest.mark.parametrize("mode", MODES)
def test_a_signal_sent_to_the_leaders_program_is_replicated(mode):
    """SIGHUP kills the epoll server: sent to the leader's program alone, it reaches the
    follower's at the same point, both die of it, and that is agreement, not a divergence."""
    port = free_port()
    proc = start_mvx("run", "--mode", mode, "--leader", variant_bin("x86_64", "epoll_server"),
                     "--follower", variant_bin("i386", "epoll_server"), "--", str(port), "0")
    try:
        assert talk(port, b"hello\n") == b"Hi, how are you.\n"
        os.kill(_program_pid(port, "leader"), signal.SIGHUP)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGHUP, err
    assert b"DIVERGENCE" not in err and b"Traceback" not in err
    assert not leftovers(f"epoll_server {port}")


def test_a_signal_sent_to_a_followers_program_alone_is_not_taken():
    """Followers take signals from the leader only: one sent to a follower's program from outside
    is dropped, and the session goes on."""
    port = free_port()
    proc = start_mvx("run", "--leader", variant_bin("x86_64", "epoll_server"), "--follower", variant_bin("i386", "epoll_server"),
                     "--", str(port), "2")
    try:
        assert talk(port, b"hello\n") == b"Hi, how are you.\n"
        os.kill(_program_pid(port, "follower"), signal.SIGHUP)
        assert talk(port, b"again\n") == b"Hi, how are you.\n"
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert b"DIVERGENCE" not in err


def test_a_killed_follower_monitor_stops_the_leader():
    """Fail closed: the leader's program must not run on unverified."""
    port = free_port()
    proc = start_mvx("run", "--leader", variant_bin("x86_64", "epoll_server"), "--follower", variant_bin("i386", "epoll_server"),
                     "--", str(port), "0")
    try:
        assert talk(port, b"hello\n") == b"Hi, how are you.\n"
        monitors = subprocess.run(["pgrep", "-f", f"mvx follower .*epoll_server {port}"], capture_output=True,
                                  text=True, check=False).stdout.split()
        assert monitors
        for pid in monitors:
            os.kill(int(pid), signal.SIGKILL)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == DIVERGENCE_EXIT
    assert b"lost" in err
    assert not leftovers(f"epoll_server {port}")


def test_followers_run_in_a_network_of_their_own():
    """The seed policy does not sync bind, so each follower's program really binds the leader's
    port: only in a network namespace of its own (mvx run's default) can it do so."""
    port = free_port()
    code, replies, _, err = run_server("x86_64", "i386", "epoll_server", port, [b"a\n"], "--policy", "seed")
    assert code == 0, err
    assert replies == [b"Hi, how are you.\n"]
    shared = mvx("run", "--shared-net", "--policy", "seed", "--leader", variant_bin("x86_64", "epoll_server"),
                 "--follower", variant_bin("i386", "epoll_server"), "--", str(port), "1", timeout=30)
    assert shared.returncode == DIVERGENCE_EXIT  # its bind failed: it went another way
    assert b"DIVERGENCE" in shared.stderr


def test_two_followers():
    """One leader, two followers of different ISAs (each in its own monitor process)."""
    port = free_port()
    proc = start_mvx("run", "--leader", variant_bin("x86_64", "epoll_server"), "--follower",
                     variant_bin("i386", "epoll_server"), "--follower", variant_bin("x86_64", "epoll_server"),
                     "--", str(port), "2")
    try:
        assert talk(port, b"one\n") == b"Hi, how are you.\n"
        assert talk(port, b"two\n") == b"Hi, how are you.\n"
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert b"DIVERGENCE" not in err


@pytest.mark.parametrize("lockstep", ["all", "none"])
def test_lockstep_modes_still_catch_a_divergence(lockstep):
    r = run_diverge("x86_64", "i386", "bytes", extra=["--lockstep", lockstep])
    assert r.returncode == DIVERGENCE_EXIT
    assert b"DIVERGENCE (arguments)" in r.stderr
    if lockstep == "all":
        assert r.stdout == b""  # held: nothing the leader did got out
    ok = run_diverge("i386", "x86_64", "bytes", "all", extra=["--lockstep", lockstep])
    assert ok.returncode == 0 and ok.stdout == b"gOt: hi\n", ok.stderr


def test_divergence_report_marks_the_differing_byte():
    r = run_diverge("x86_64", "i386", "bytes")
    err = r.stderr.decode()
    assert 'leader:   "got: hi\\n"' in err and 'follower: "gOt: hi\\n"' in err
    lines = err.splitlines()
    follower_line = next(i for i, ln in enumerate(lines) if ln.startswith('    follower: "gOt'))
    assert lines[follower_line + 1].index("^") == lines[follower_line].index("O")


@pytest.mark.parametrize("extra", [("--no-write-behind",), ()], ids=["lockstep", "write-behind"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("leader", "follower"), PAIRS)
def test_a_storm_of_signals_loses_nothing_and_every_variant_takes_each_at_the_same_point(mode, leader, follower,
                                                                                        extra):
    """SIGUSR1 (a handler without SA_RESTART) sent to the leader's program every millisecond
    while it copies stdin to stdout (variants/src/signal_storm.c). Signals land on blocking calls
    (EINTR), on calls that never block (the call is made after the handler) and while the
    monitor performs a call for the variant (its result goes to the restarted call, so no byte
    read is lost). Every variant counts the same signals and EINTRs, and the output is the input."""
    data = b"".join(b"line %06d of the storm\n" % i for i in range(6000))
    proc = subprocess.Popen([sys.executable, "-m", "mvx", "run", "--mode", mode, *extra,
                             "--leader", variant_bin(leader, "signal_storm"),
                             "--follower", variant_bin(follower, "signal_storm")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout.read(6) == b"ready\n"  # the handler is in place
        program = _child_of_monitor("leader", "signal_storm")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            reading = pool.submit(proc.stdout.read)  # drained while we write
            sent = 0
            for i in range(0, len(data), 1500):
                try:
                    os.write(proc.stdin.fileno(), data[i:i + 1500])
                except BrokenPipeError:
                    break
                for _ in range(3):
                    try:
                        os.kill(program, signal.SIGUSR1)
                    except ProcessLookupError:  # the session ended early: its stderr says why, below
                        break
                    sent += 1
                    time.sleep(0.001)
            proc.stdin.close()
            out = reading.result(timeout=90)
        err = proc.stderr.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")
    assert b"DIVERGENCE" not in err and b"Traceback" not in err, err
    body, _, summary = out.rpartition(b"signals ")
    assert body == data  # nothing read was lost, nothing was read twice
    counts = summary.split()
    assert 0 < int(counts[0]) <= sent, summary


def traced_by(monitor: str, candidates: list[str]) -> list[int]:
    """Which of `candidates` the monitor traces (a follower's program is not its child: it runs in
    a world of its own, made by a fork of the monitor)."""
    try:
        threads = set(os.listdir(f"/proc/{monitor}/task"))  # the tracer is the monitor's thread
    except OSError:
        return []
    found = []
    for entry in candidates:
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            tracer = status.partition("\nTracerPid:\t")[2].partition("\n")[0]
            if tracer in threads:
                found.append(int(entry))
    return found


def _child_of_monitor(role: str, program: str, timeout: float = 20) -> int:
    """The pid of `program` under the `mvx <role>` monitor (once it has started): the process its
    thread traces (a follower's is under the helpers of its pid namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        monitors = subprocess.run(["pgrep", "-f", f"mvx {role} .*{program}"], capture_output=True, text=True,
                                  check=False).stdout.split()
        programs = subprocess.run(["pgrep", "-f", program], capture_output=True, text=True, check=False).stdout.split()
        for monitor in monitors:
            traced = traced_by(monitor, programs)
            if traced:
                return traced[0]
        time.sleep(0.02)
    pytest.fail(f"no {program} under an mvx {role} monitor")


def test_stats_prints_a_line_per_monitor_at_its_interval():
    """--stats 0.2: each monitor says, at each interval, its synced calls/s and in all, what waits
    between it and its peers, its CPU and RSS; the totals grow with the clients served."""
    port, count = free_port(), 40
    proc = start_mvx("run", "--stats", "0.2", "--leader", variant_bin("x86_64", "epoll_server"), "--follower",
                     variant_bin("i386", "epoll_server"), "--", str(port), str(count))
    try:
        for i in range(count):  # over about two seconds: several lines
            assert talk(port, b"hello %d\n" % i)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = err.decode(errors="replace")
    assert proc.returncode == 0, err
    number = r"(\d+) synced calls/s \((\d+) in all\)"
    leader = re.findall(rf"^mvx: stats leader: {number}, records in flight: follower 0 (\d+), held for checks [\d.]+ [KMG]?i?B, "
                        r"divergences 0; monitor CPU \d+%, RSS (\d+) MB$", err, re.MULTILINE)
    follower = re.findall(rf"^mvx: stats follower: {number}, the leader's oldest waiting record [\d.]+ ms old; "
                          r"monitor CPU \d+%, RSS (\d+) MB$", err, re.MULTILINE)
    assert len(leader) >= 3 and len(follower) >= 3, err
    totals = [int(t) for _, t, _, _ in leader]
    assert totals == sorted(totals) and totals[-1] > count, err  # several calls per client
    assert any(int(rate) > 0 for rate, *_ in leader), err
    assert all(10 < int(rss) < 500 for *_, rss in leader + follower), err


@pytest.mark.parametrize("mode", ["hybrid", "seccomp", "ptrace"])
@pytest.mark.parametrize("how", ["fork", "vfork", "thread"])
def test_a_new_task_stops_the_run_before_it_is_made(tmp_path, mode, how):
    """Tasks are not followed yet: a new process or thread would run its calls unchecked, so the run
    stops, fail closed, at the call that would make it (clone, clone3, fork, vfork): the child's
    one act (creating a file) never happens, the program goes no further, one line says why.
    Natively the same program makes its task."""
    native = tmp_path / "native"
    r = subprocess.run([variant_bin("x86_64", "spawn"), how, str(native)], capture_output=True, timeout=30, check=False)
    assert r.returncode == 0 and r.stdout == b"spawning\nspawned\n" and native.exists(), r
    marker = tmp_path / "marker"
    r = mvx("run", "--mode", mode, "--leader", f"{variant_bin('x86_64', 'spawn')} {how} {marker}",
            "--follower", f"{variant_bin('i386', 'spawn')} {how} {marker}")
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, err
    assert r.stdout == b"spawning\n", (r.stdout, err)
    assert not marker.exists(), "the new task ran"
    # (the leader's monitor says it, or the follower's when its program got there first)
    said = [line for line in err.splitlines() if line.startswith("mvx:") and "'s program made " in line]
    assert said and "fail closed" in said[0], err
    assert "Traceback" not in err
