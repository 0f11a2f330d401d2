"""A monitor's shadow of its variant's fd table: what kind of file each fd is, the epoll
registrations (their data words), the monitor's own duplicates of the variant's fds, and a
follower's placeholders (fds that exist for real only in the leader: the follower holds an inert
socket there, whose other end the monitor keeps). Calls change it by their Traits.shadow."""

from __future__ import annotations

import os
import socket
import struct
import tempfile

from mvx import MvxError
from mvx.core.outputs import EpollRegistry, epoll_ctl_data
from mvx.isa.canonical import decode_outputs
from mvx.isa.syscalls import Fd, OutInts
from mvx.mechanics.engine import TraceeMemory
from mvx.mechanics.native import lib
from mvx.mechanics.procinfo import FdKinds
from mvx.mechanics.proxy import FdCache

_EPOLL_OPS = {1: "EPOLL_CTL_ADD", 2: "EPOLL_CTL_DEL", 3: "EPOLL_CTL_MOD"}


class FdShadow:
    def __init__(self, variant) -> None:
        self.variant = variant
        self.kinds = FdKinds(variant.pid)
        self.epoll = EpollRegistry()
        self.dups = FdCache(variant)
        self._placeholders: dict[int, socket.socket] = {}  # placeholder fd -> the monitor's end
        # fds of the variant's own world (Traits.world_fd): files it opened, pipes, socketpairs and
        # eventfds it made; never what it inherited (its stdio is the leader's world) nor a socket()
        self.world: set[int] = set()

    def kind(self, fd: int) -> str | None:
        return self.kinds.get(fd)

    def in_world(self, fd) -> bool:
        return fd in self.world

    def track(self, call, ret: int | None) -> None:
        """Keep the shadow current after `call` returned `ret` (None: not learned)."""
        effect = call.spec.traits.shadow
        self._track_world(call, ret)
        if effect == "epoll_ctl":
            self.epoll.on_ctl(call.args[0], call.args[1], call.args[2], epoll_ctl_data(call))
        elif effect == "close" and isinstance(call.args[0], int):
            self.epoll.on_close(call.args[0])
            self.kinds.forget(call.args[0])
            self.dups.forget(call.args[0])
        elif effect == "dup":
            self.kinds.forget(call.args[1])
        if ret is not None and ret >= 0 and isinstance(call.spec.ret, Fd):
            self.kinds.forget(ret)
        elif effect == "pair":
            self.kinds = FdKinds(self.variant.pid)  # two new fds; cheap to rebuild

    def after_fast(self, kind: int, fd: int, dup: int, op: int = 0, data: int = 0) -> None:
        """What the C loop (mvx_fast.c) did to the variant's fd table, in order (MVX_FDEV_*): the
        variant closed `fd` and the loop closed `dup` with it (-1: none); the loop took `dup`, a
        duplicate of `fd`; the leader's monitor accepted a connection, installed at `fd`, and
        keeps `dup` as its duplicate; a follower got a placeholder at `fd`, `dup` its other end;
        the variant made epoll_ctl(dup, op, fd, {data})."""
        if kind == lib.MVX_FDEV_EPOLL_CTL:
            self.epoll.on_ctl(dup, _EPOLL_OPS[op], fd, None if op == 2 else data)
            return
        if kind == lib.MVX_FDEV_GRABBED:
            self.dups.adopt(fd, dup)
            return
        self.kinds.forget(fd)
        self.world.discard(fd)
        if kind == lib.MVX_FDEV_CLOSED:
            self.epoll.on_close(fd)
            self.dups.closed_with(fd, dup)
            self.drop_placeholder(fd)
        elif kind == lib.MVX_FDEV_NEW:
            self.dups.adopt(fd, dup)
        elif kind == lib.MVX_FDEV_PLACEHOLDER:
            self.adopt_placeholder(fd, socket.socket(fileno=dup))

    def _track_world(self, call, ret: int | None) -> None:
        made = call.spec.traits.world_fd
        if call.spec.traits.shadow == "close" and isinstance(call.args[0], int):
            self.world.discard(call.args[0])
        if not made or ret is None or ret < 0:
            return
        if call.spec.traits.receives_fds:
            if call.args[0] not in self.world:  # from outside (the leader's): not the variant's own
                return
            new = self._received(call, ret)
        elif call.spec.traits.shadow == "pair":
            new = self._pair(call)
        elif isinstance(call.spec.ret, Fd):
            new = [ret]
        else:
            return
        for fd in new:
            self.world.discard(fd)
            self.kinds.forget(fd)
            if made == ("same",):
                if call.args[0] in self.world:
                    self.world.add(fd)
            elif self.kinds.get(fd) in made and not self._kernel_file(fd):
                self.world.add(fd)

    def _kernel_file(self, fd: int) -> bool:
        """A file of /proc or /sys: what the kernel says of the process and the machine is an
        input (each ISA's /proc/self/stat differs), replicated from the leader, not the variant's own."""
        try:
            target = os.readlink(f"/proc/{self.variant.pid}/fd/{fd}")
        except OSError:
            return False
        return target.startswith(("/proc/", "/sys/")) or target in ("/proc", "/sys")

    def _received(self, call, ret: int) -> list[int]:
        """The fds an SCM_RIGHTS message brought (the call's decoded out-data)."""
        try:
            done = decode_outputs(call, TraceeMemory(self.variant), ret)
        except (OSError, MvxError, ValueError, KeyError, TypeError):
            return []
        fds = []
        for value in done.outputs.values():
            for cmsg in value.get("msg_control", ()) if isinstance(value, dict) else ():
                if isinstance(cmsg, dict) and cmsg.get("type") == "SCM_RIGHTS":
                    fds += [fd for fd in cmsg.get("data", ()) if isinstance(fd, int)]
        return fds

    def _pair(self, call) -> list[int]:
        """The two fds pipe2/socketpair wrote (their OutInts argument)."""
        i = next(i for i, k in enumerate(call.kinds or call.spec.kinds) if isinstance(k, OutInts))
        try:
            return list(struct.unpack("<ii", self.variant.read(call.values[i], 8)))
        except (OSError, IndexError, struct.error):
            return []

    # ---- placeholders (a follower's) --------------------------------------------------------------
    def is_placeholder(self, fd) -> bool:
        return fd in self._placeholders

    def drop_placeholder(self, fd: int) -> None:
        """The follower closed a placeholder."""
        peer = self._placeholders.pop(fd, None)
        if peer:
            peer.close()

    def adopt_placeholder(self, fd: int, peer: socket.socket | None = None) -> None:
        """Keep the other end of the inert socket just placed at `fd` (connect one first when the
        replay made a lone socket: ptrace), so a program whose policy lets it write there (the
        seed's) writes into nothing instead of failing."""
        self.drop_placeholder(fd)
        if peer is None:
            peer = self._connect(fd)
        peer.setblocking(False)
        self._placeholders[fd] = peer

    def _connect(self, fd: int) -> socket.socket:
        mine = self.variant.grab_fd(fd)
        # a path, not an abstract name: the placeholder may live in the follower's own network
        # namespace, and abstract AF_UNIX names do not cross namespaces
        with tempfile.TemporaryDirectory(prefix="mvx-ph-") as tmp:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listener.bind(os.path.join(tmp, "s"))
                listener.listen(1)
                target = socket.socket(fileno=mine)
                try:
                    target.connect(listener.getsockname())
                finally:
                    target.detach()
                    os.close(mine)
                peer, _ = listener.accept()
            finally:
                listener.close()
        return peer

    def drain_placeholders(self) -> None:
        for peer in self._placeholders.values():
            try:
                while peer.recv(65536):
                    pass
            except (BlockingIOError, OSError):
                pass

    def close(self) -> None:
        self.dups.close()
        for peer in self._placeholders.values():
            peer.close()
        self._placeholders.clear()
