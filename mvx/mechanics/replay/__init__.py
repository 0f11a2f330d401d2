"""Replay: make a follower's syscall produce a recorded result without executing it.

A `Recorded` result is what the leader's call did: its return value (negative errno for an error),
the bytes it wrote to memory (already placed at the follower's addresses), and for fd-creating
calls the fact that an fd numbered `ret` must appear in the follower.

- ptrace stops (ENTRY, SECCOMP): out-data is written while the follower is stopped, then the call
  is skipped with its number set to -1 and the return register set, in one register write
  (`Strategy.ONE_STOP`), or at the exit stop (`Strategy.TWO_STOP`, the classic way, kept so tests
  can prove the two equivalent). An fd-creating call is rewritten into an inert
  socket(AF_UNIX, SOCK_STREAM) that lands at the lowest free fd, as the original would have; the
  number is checked against the recorded one.
- notifications (NOTIFY): out-data by process_vm_writev, then the answer; an fd is installed with
  SECCOMP_IOCTL_NOTIF_ADDFD at the recorded number, atomically with the answer.
"""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import dataclass, field

from mvx import MvxError
from mvx.mechanics.engine import CallGone, Stop, StopKind, Variant


class Strategy(enum.Enum):
    ONE_STOP = "one-stop"
    TWO_STOP = "two-stop"


@dataclass
class Recorded:
    ret: int
    writes: list[tuple[int, bytes]] = field(default_factory=list)
    creates_fd: bool = False
    cloexec: bool = False
    nonblock: bool = False


class ReplayError(MvxError):
    """The follower could not be made to produce the recorded result (its state differs)."""


def inject(variant: Variant, stop: Stop, rec: Recorded, strategy: Strategy = Strategy.ONE_STOP) -> socket.socket | None:
    """Answer the follower's stopped call `stop` with `rec`; on return the follower is running.

    Where the leader's call created an fd, the follower gets an inert placeholder at the same number:
    an AF_UNIX stream socket. Under user notification it is one end of a socketpair, and the other
    end is returned (the monitor keeps it, so a write there goes into nothing instead of failing)."""
    for addr, data in rec.writes:
        variant.write(addr, data)
    if stop.kind is StopKind.NOTIFY:
        if rec.creates_fd and rec.ret >= 0:
            placeholder, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                placeholder.setblocking(not rec.nonblock)
                variant.install_fd(stop, placeholder.fileno(), at=rec.ret, answer=True, cloexec=rec.cloexec)
            except BaseException:
                peer.close()
                raise
            finally:
                placeholder.close()
            return peer
        if not variant.respond(stop, rec.ret):
            raise CallGone(f"variant {variant.pid}: the notified call went away")
        return None
    if stop.kind not in (StopKind.ENTRY, StopKind.SECCOMP):
        raise MvxError(f"cannot inject at a {stop.kind.name} stop")
    if rec.creates_fd and rec.ret >= 0:
        _inject_fd_by_rewrite(variant, stop, rec)
        return None
    if strategy is Strategy.ONE_STOP:
        variant.skip(stop, rec.ret)
        return None
    variant.skip(stop, -38, to_exit=True)  # nr = -1 now; the real value goes in at the exit
    exit_stop = variant.wait()
    if exit_stop.kind is not StopKind.EXIT:
        raise ReplayError(f"expected the exit of the skipped call, got {exit_stop.kind.name}")
    variant.set_return(exit_stop, rec.ret)
    variant.resume()
    return None


def _inject_fd_by_rewrite(variant: Variant, stop: Stop, rec: Recorded) -> None:
    arch = stop.arch
    sock_type = arch.const("SOCK_STREAM")
    if rec.cloexec:
        sock_type |= arch.const("SOCK_CLOEXEC")
    if rec.nonblock:
        sock_type |= arch.const("SOCK_NONBLOCK")
    variant.rewrite(stop, "socket", (arch.const("AF_UNIX"), sock_type, 0))
    variant.resume(to_exit=True)
    exit_stop = variant.wait()
    if exit_stop.kind is not StopKind.EXIT:
        raise ReplayError(f"expected the exit of the placeholder socket, got {exit_stop.kind.name}")
    if exit_stop.ret != rec.ret:
        # the fd tables differ: undo the placeholder's effect is impossible here, so fail closed
        raise ReplayError(
            f"fd numbers diverge: the leader's call created fd {rec.ret}, the follower's lowest free fd "
            f"is {exit_stop.ret if exit_stop.ret >= 0 else os.strerror(-exit_stop.ret)}"
        )
    variant.resume()
