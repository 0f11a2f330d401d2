"""A monitor's shadow of its variant's fd table: what kind of file each fd is, the epoll
registrations (their data words), the monitor's own duplicates of the variant's fds, and a
follower's placeholders (fds that exist for real only in the leader: the follower holds an inert
socket there, whose other end the monitor keeps). Calls change it by their Traits.shadow."""

from __future__ import annotations

import os
import socket
import struct
import tempfile

from mvx.core.outputs import EpollRegistry, epoll_ctl_data
from mvx.isa.syscalls import Fd, OutInts
from mvx.mechanics.native import lib
from mvx.mechanics.procinfo import FdKinds
from mvx.mechanics.proxy import FdCache

_EPOLL_OPS = {1: "EPOLL_CTL_ADD", 2: "EPOLL_CTL_DEL", 3: "EPOLL_CTL_MOD"}
_SENT_KEPT = 4096  # FdShadow.sent: the identities of the fds last sent, at most


class FdShadow:
    def __init__(self, variant) -> None:
        self.variant = variant
        self.kinds = FdKinds(variant.pid)
        self.epoll = EpollRegistry()
        self.dups = FdCache(variant)
        self._placeholders: dict[int, socket.socket] = {}  # placeholder fd -> the monitor's end
        # fds of the variant's own world (Traits.world_fd): files it opened, pipes, socketpairs and
        # eventfds it made, and what it passed itself of those (SCM_RIGHTS); never what it
        # inherited (its stdio is the leader's world) nor a socket()
        self.world: set[int] = set()
        self._kernel_devs: set[int] | None = None  # the devices of its /proc and /sys (_kernel_devices)
        # what the variant sent with SCM_RIGHTS over a socket of its world: the file's identity
        # (st_dev, st_ino) -> whether the fd sent was of its world (None: fds of both kinds were
        # sent with that identity); an fd received so takes that (FdShadow._received)
        self.sent: dict[tuple[int, int], bool | None] = {}

    def kind(self, fd: int) -> str | None:
        return self.kinds.get(fd)

    def in_world(self, fd) -> bool:
        return fd in self.world

    def track(self, call, ret: int | None, outputs: dict | None = None) -> None:
        """Keep the shadow current after `call` returned `ret` (None: not learned) with `outputs`,
        its out-data decoded while the variant was still stopped in it (None: not decoded; the
        variant's memory is not read again here: it runs on, and may have reused its buffers)."""
        effect = call.spec.traits.shadow
        self._track_world(call, ret, outputs)
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

    def _track_world(self, call, ret: int | None, outputs: dict | None) -> None:
        traits = call.spec.traits
        made = traits.world_fd
        if traits.shadow == "close" and isinstance(call.args[0], int):
            self.world.discard(call.args[0])
        if ret is None or ret < 0:
            return
        if traits.sends_fds or traits.receives_fds:
            # over a socket of the leader's world (from or to outside) nothing is the variant's own:
            # what a follower would receive there exists only in the leader (mvx.core.outputs
            # fails closed on it)
            own = call.args[0] in self.world
            if traits.receives_fds:
                self._received(scm_rights((outputs or {}).get(1)), own)
            elif own:
                self._sent(scm_rights(call.args[1]))
            return
        if not made:
            return
        if traits.shadow == "pair":
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
        input (each ISA's /proc/self/stat differs), replicated from the leader, not the variant's own.

        Known by its file system (the device of the variant's own /proc and /sys mounts), or by its
        path: a path alone can mislead, since the kernel writes the path of a mount the monitor's
        namespace does not have (a follower's own /proc) from that namespace's root, which is not
        `/` when mvx itself runs in a chroot."""
        fdpath = f"/proc/{self.variant.pid}/fd/{fd}"
        try:
            target = os.readlink(fdpath)
            if target.startswith(("/proc/", "/sys/")) or target in ("/proc", "/sys"):
                return True
            return os.stat(fdpath).st_dev in self._kernel_devices()
        except OSError:
            return False

    def _kernel_devices(self) -> set[int]:
        """The devices of the variant's own /proc and /sys (its mount namespace's), once."""
        if self._kernel_devs is None:
            devs = set()
            for where in ("proc", "sys"):
                try:
                    devs.add(os.stat(f"/proc/{self.variant.pid}/root/{where}").st_dev)
                except OSError:
                    pass
            self._kernel_devs = devs
        return self._kernel_devs

    def _identity(self, fd: int) -> tuple[int, int] | None:
        """The open file's (st_dev, st_ino): the same for every fd of it, in whichever process."""
        try:
            st = os.stat(f"/proc/{self.variant.pid}/fd/{fd}")
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _sent(self, fds: list[int]) -> None:
        """The variant sent `fds` over a socket of its world. They are still open: the monitor has
        not let the variant past its next synced call (an fd it closed unseen is not noted: what
        it sent is then taken for the leader's)."""
        for fd in fds:
            key = self._identity(fd)
            if key is None:
                continue
            own = fd in self.world
            before = self.sent.pop(key, own)
            self.sent[key] = own if before == own else None
            while len(self.sent) > _SENT_KEPT:
                del self.sent[next(iter(self.sent))]

    def _received(self, fds: list[int], own: bool) -> None:
        """The variant received `fds`, over a socket of its world when `own`: each is of its world
        when the fd it sent was (a pipe, file, socketpair... it made), else the leader's (what it
        inherited, a socket() or accepted connection, or an fd whose sending no monitor saw: a
        forked child's, not followed), the same in every variant, as the program's calls were."""
        for fd in fds:
            self.world.discard(fd)
            self.kinds.forget(fd)
            if own and self.sent.get(self._identity(fd)) is True:
                self.world.add(fd)

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


def scm_rights(msg) -> list[int]:
    """The fds a decoded msghdr (sendmsg's argument, recvmsg's out-data) carries with SCM_RIGHTS."""
    fds: list[int] = []
    control = msg.get("msg_control") if isinstance(msg, dict) else None
    for cmsg in control if isinstance(control, (tuple, list)) else ():
        if isinstance(cmsg, dict) and cmsg.get("level") == "SOL_SOCKET" and cmsg.get("type") == "SCM_RIGHTS":
            fds += [fd for fd in cmsg.get("data", ()) if isinstance(fd, int) and fd >= 0]
    return fds
