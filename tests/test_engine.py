"""The tracing engine on real variants of each ISA, in every mode.

Each test would fail if the mechanism it names did not work: the filter must hide untrapped calls,
injection must change what the program sees, a skipped call must have no effect."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
from _variants import NATIVE_ARCHES, free_port, variant_bin

from mvx import MvxError
from mvx.isa.canonical import RawSyscall, normalize
from mvx.mechanics.engine import Mode, StopKind, TraceeMemory, TrapSet, Variant
from mvx.mechanics.filters import Trap
from mvx.mechanics.replay import Recorded, Strategy, inject

MODES = [Mode.PTRACE, Mode.SECCOMP, Mode.HYBRID]


def canonical(v: Variant, stop):
    return normalize(RawSyscall(stop.arch.name, stop.nr, stop.args), TraceeMemory(v))


def canonical_name(stop) -> str:
    return normalize(RawSyscall(stop.arch.name, stop.nr, stop.args)).name


def traps(mode: Mode, *names: str) -> TrapSet:
    action = Trap.NOTIFY if mode is Mode.HYBRID else Trap.TRACE
    return TrapSet({n: action for n in names})


def pipe_with(data: bytes) -> int:
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def run_to_end(v: Variant, on_stop) -> int:
    """Drive a variant until it exits; on_stop decides every synced stop."""
    while True:
        stop = v.wait()
        if stop.kind is StopKind.EXITED:
            return stop.status
        if stop.kind is StopKind.KILLED:
            return -stop.status
        on_stop(stop)


def let_run(v: Variant, stop) -> None:
    if stop.kind is StopKind.NOTIFY:
        v.continue_call(stop)
    else:
        v.resume()


@pytest.mark.parametrize("arch", NATIVE_ARCHES)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_filter_traps_only_the_synced_set(arch, mode):
    """stdio_loop reads stdin and writes stdout; trapping only `write` must show writes, no reads."""
    out_r, out_w = os.pipe()
    v = Variant([variant_bin(arch, "stdio_loop")], mode=mode, traps=traps(mode, "write"),
                stdin=pipe_with(b"one\ntwo\nthree\n"), stdout=out_w)
    seen = []
    with v:
        os.close(out_w)

        def on_stop(stop):
            seen.append(canonical_name(stop))
            let_run(v, stop)

        status = run_to_end(v, on_stop)
    assert status == 0
    assert read_all(out_r) == b"ONE\nTWO\nTHREE\n"
    assert seen == ["write", "write", "write"]
    if mode is Mode.PTRACE:
        assert v.stops_seen > 20  # every syscall stops; the C loop resumed the unsynced ones itself
    elif mode is Mode.SECCOMP:
        assert v.stops_seen == 3  # the kernel filter let everything else through without a stop
    else:
        assert v.stops_seen == 0  # notifications only; no ptrace stop at all


def test_only_a_call_the_monitor_performs_is_traced_by_its_arguments():
    """The leader (and `mvx trace`) perform epoll_pwait: its masked form is traced. A follower
    answers it from the record whatever its mask: notified in every form. Other modes trace all."""
    from mvx.core import policy as policies
    from mvx.runtime.monitor import trap_set

    pol = policies.load("default")
    for role in ("leader", "trace"):
        t = trap_set(Mode.HYBRID, pol, role)
        assert t.rules["epoll_pwait"] is Trap.NOTIFY and t.trace_when_set == {"epoll_pwait": ("sigmask",)}
    t = trap_set(Mode.HYBRID, pol, "follower")
    assert t.rules["epoll_pwait"] is Trap.NOTIFY and t.trace_when_set == {}
    assert trap_set(Mode.SECCOMP, pol, "leader").trace_when_set == {}


def test_the_filter_tests_the_register_that_carries_the_argument():
    """x86_64 and i386 epoll_pwait are notified only with a NULL mask (its 5th register); their
    epoll_wait, which has no mask, always; an argument no filter can read (i386 socketcall's
    sub-call arguments are in memory) makes every form traced."""
    from mvx.isa import arch as archmod
    from mvx.mechanics.filters import TRACE_DATA, describe

    arches = [archmod.get("x86_64"), archmod.get("i386")]
    pfc = describe(arches, {"epoll_pwait": Trap.NOTIFY, "accept4": Trap.NOTIFY},
                   {"epoll_pwait": ("sigmask",), "accept4": ("flags",)})
    sections = pfc.split("# filter for arch")
    x86_64, i386 = (next(s for s in sections if s.startswith(f" {name} ")) for name in ("x86_64", "x86"))
    trace, notify = f"action TRACE({TRACE_DATA});", "action 0x7fc00000;"

    def rule(section: str, nr: int) -> str:
        body = section.split(f"if ($syscall == {nr})\n", 1)[1]
        return body.split("# filter for syscall", 1)[0].split("# default action", 1)[0]

    a, b = arches
    assert rule(x86_64, a.nr("epoll_wait")).split() == notify.split()
    assert rule(i386, b.nr("epoll_wait")).split() == notify.split()
    assert "$a4.hi32 == 0" in rule(x86_64, a.nr("epoll_pwait")) and trace in rule(x86_64, a.nr("epoll_pwait"))
    masked = rule(i386, b.nr("epoll_pwait")).split()
    assert masked == ["if", "($a4", "==", "0)", *notify.split(), "else", *trace.split()]
    assert rule(x86_64, a.nr("accept")).split() == notify.split()  # accept4 with flags 0
    assert notify not in rule(i386, b.nr("socketcall"))


@pytest.mark.parametrize("arch", NATIVE_ARCHES)
def test_a_wait_with_a_signal_mask_is_traced_where_one_without_is_notified(arch):
    """epoll_pwait is notified in hybrid mode (the leader's monitor performs it), but a signal mask
    only the variant can apply to itself: the filter's argument condition (Traits.trace_when_set)
    traps the masked calls with RET_TRACE, so they run in the variant; epoll_wait, whose mask is
    always NULL, and epoll_pwait with NULL stay notified. maskwait makes two masked calls, then one
    without a mask."""
    out_r, out_w = os.pipe()
    v = Variant([variant_bin(arch, "maskwait"), "ready"], mode=Mode.HYBRID, stdout=out_w,
                traps=TrapSet({"epoll_pwait": Trap.NOTIFY}, {"epoll_pwait": ("sigmask",)}))
    seen = []
    with v:
        os.close(out_w)

        def on_stop(stop):
            seen.append((canonical(v, stop).values[4] != 0, stop.kind))
            let_run(v, stop)

        status = run_to_end(v, on_stop)
    assert read_all(out_r).endswith(b"verdict: pass\n")
    assert status == 0
    assert seen == [(True, StopKind.SECCOMP), (True, StopKind.SECCOMP), (False, StopKind.NOTIFY)]


@pytest.mark.parametrize("arch", NATIVE_ARCHES)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("strategy", list(Strategy), ids=lambda s: s.value)
def test_injected_read_returns_chosen_bytes(arch, mode, strategy):
    """The program's real stdin says 'real'; the injected reads say 'hello' then EOF."""
    stdin = pipe_with(b"real input\n")
    out_r, out_w = os.pipe()
    v = Variant([variant_bin(arch, "stdio_loop")], mode=mode, traps=traps(mode, "read"),
                stdin=stdin, stdout=out_w)
    answers = [b"hello\n", b""]
    with v:
        os.close(out_w)

        def on_stop(stop):
            assert canonical_name(stop) == "read"
            fd, buf, count = stop.args[:3]
            if fd != 0:  # the dynamic loader reading libc
                return let_run(v, stop)
            assert count >= 6
            data = answers.pop(0)
            inject(v, stop, Recorded(ret=len(data), writes=[(buf, data)]), strategy)

        status = run_to_end(v, on_stop)
    assert status == 0
    assert read_all(out_r) == b"HELLO\n"
    assert answers == []
    assert os.read(stdin, 100) == b"real input\n"  # the real read never happened
    os.close(stdin)


@pytest.mark.parametrize("arch", NATIVE_ARCHES)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_skipped_write_writes_nothing(arch, mode):
    out_r, out_w = os.pipe()
    v = Variant([variant_bin(arch, "stdio_loop"), "--exit", "7"], mode=mode, traps=traps(mode, "write"),
                stdin=pipe_with(b"secret\n"), stdout=out_w)
    skipped = []
    with v:
        os.close(out_w)

        def on_stop(stop):
            skipped.append(stop.args[2])
            inject(v, stop, Recorded(ret=stop.args[2]))  # claim success, write nothing

        status = run_to_end(v, on_stop)
    assert status == 7
    assert skipped == [7]
    assert read_all(out_r) == b""


def connect_when_listening(port: int, result: dict) -> None:
    """Client side, in a thread: the tracer thread must keep driving the server meanwhile."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            result["client"] = socket.create_connection(("127.0.0.1", port), timeout=5)
            return
        except ConnectionRefusedError:
            time.sleep(0.01)


@pytest.mark.parametrize("arch", NATIVE_ARCHES)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_injected_accept4_returns_a_socket_at_the_chosen_fd(arch, mode):
    """A real client makes the server's epoll wake up; its accept4 is answered by the monitor with
    a placeholder socket at the fd the leader would have had. At the server's next call on that fd
    the test checks the fd is there and is a socket, and that the real connection was not taken."""
    port = free_port()
    v = Variant([variant_bin(arch, "epoll_server"), str(port)], mode=mode,
                traps=traps(mode, "accept4", "read", "write", "close"), stdout=os.open(os.devnull, os.O_WRONLY))
    result: dict = {}
    client_thread = threading.Thread(target=connect_when_listening, args=(port, result))
    with v:
        client_thread.start()
        chosen = None
        checked = False
        while not checked:
            stop = v.wait()
            assert stop.is_syscall, stop
            call = canonical(v, stop)  # on i386 accept4 comes as socketcall(SYS_ACCEPT4, args)
            name = call.name
            if name == "accept4" and chosen is None:
                listen_fd = call.values[0]
                chosen = listen_fd + 2  # the lowest free fd after the listening socket and the epoll fd
                inject(v, stop, Recorded(ret=chosen, creates_fd=True, cloexec=True, nonblock=True))
            elif name == "accept4":
                inject(v, stop, Recorded(ret=-11))  # EAGAIN: no more clients
            elif chosen is not None and call.values and call.values[0] == chosen:
                link = os.readlink(f"/proc/{v.pid}/fd/{chosen}")
                assert link.startswith("socket:"), link
                checked = True
                let_run(v, stop)
            else:
                let_run(v, stop)
        client_thread.join()
        client = result["client"]
        # the real client's connection is still waiting in the backlog: nobody answered it
        client.settimeout(0.3)
        with pytest.raises(socket.timeout):
            client.recv(10)
        client.close()


def send_sigterm_when_ready(pid: int, out_fd: int) -> None:
    os.read(out_fd, 100)  # "epoll_server: listening": its SIGTERM handler is installed
    os.kill(pid, signal.SIGTERM)


@pytest.mark.parametrize("arch", NATIVE_ARCHES)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_signals_are_delivered_not_swallowed(arch, mode):
    """SIGTERM to a traced epoll_server reaches its handler: it leaves its loop and exits 0."""
    port = free_port()
    out_r, out_w = os.pipe()
    v = Variant([variant_bin(arch, "epoll_server"), str(port)], mode=mode, traps=traps(mode, "accept4"),
                stdout=out_w)
    with v:
        os.close(out_w)
        sender = threading.Thread(target=send_sigterm_when_ready, args=(v.pid, out_r))
        sender.start()
        status = run_to_end(v, lambda stop: let_run(v, stop))
        sender.join()
    os.close(out_r)
    assert status == 0


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_exit_status_and_death_by_signal(mode):
    v = Variant([variant_bin("x86_64", "stdio_loop"), "--exit", "3"], mode=mode,
                traps=traps(mode, "write"), stdin=pipe_with(b""))
    with v:
        assert run_to_end(v, lambda s: let_run(v, s)) == 3
    r, w = os.pipe()
    v = Variant([variant_bin("x86_64", "stdio_loop")], mode=mode, traps=traps(mode, "write"), stdin=r)
    with v:
        os.close(r)
        os.kill(v.pid, signal.SIGKILL)
        assert run_to_end(v, lambda s: let_run(v, s)) == -signal.SIGKILL
    os.close(w)


def test_errors_are_one_line(tmp_path):
    with pytest.raises(MvxError, match="no such file"):
        Variant([str(tmp_path / "nope")])
    script = tmp_path / "plain.txt"
    script.write_text("hello")
    with pytest.raises(MvxError, match="not executable"):
        Variant([str(script)])
    with pytest.raises(MvxError, match="aarch64 binary"):
        Variant([variant_bin("aarch64", "stdio_loop")])
    with pytest.raises(MvxError, match="command not found"):
        Variant(["no-such-command-mvx"])
