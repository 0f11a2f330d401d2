"""The monitor's C fast path (mvx/mechanics/native/mvx_fast.c), from Python: which calls it carries
(compiled from the policy into its per-ISA table) and the state it reads (which fds are sockets of
the leader's world, the leader monitor's duplicates of them, the sync core's sequence number).

The C loop decides nothing Python would decide differently: it carries a call only where the
policy's class and the fd's kind make the outcome certain (docs/DESIGN.md, "The fast path"), and
returns every other stop to Python untouched. MVX_FAST=0 turns it off (every call the Python way)."""

from __future__ import annotations

import os

from mvx.isa import arch as archmod
from mvx.mechanics.native import ffi, lib
from mvx.mechanics.proxy import Performed

# canonical name -> (the C loop's handler, the policy class it carries it as)
HOT = {
    "read": (lib.MVX_HOT_READ, "replicated"),
    "recvfrom": (lib.MVX_HOT_RECVFROM, "replicated"),
    "write": (lib.MVX_HOT_WRITE, "checked_output"),
    "sendto": (lib.MVX_HOT_SENDTO, "checked_output"),
    "writev": (lib.MVX_HOT_WRITEV, "checked_output"),
    "shutdown": (lib.MVX_HOT_SHUTDOWN, "checked_output"),
    "pread64": (lib.MVX_HOT_PREAD, "replicated"),  # carried on the variant's own files only (local there)
    "epoll_pwait": (lib.MVX_HOT_EPOLL_PWAIT, "replicated"),  # and raw epoll_wait (MVX_HOT_EPOLL_WAIT)
    "close": (lib.MVX_HOT_CLOSE, "local"),  # made in every variant; Python's shadow learns it (take_fd_events)
    "sendfile": (lib.MVX_HOT_SENDFILE, "checked_output"),  # from a file of the variant's own, at an offset it names
    "setsockopt": (lib.MVX_HOT_SETSOCKOPT, "local"),  # TCP_CORK, TCP_NODELAY; a follower's placeholders only
    "clock_gettime": (lib.MVX_HOT_CLOCK, "replicated"),  # global clocks: the leader's reading in every variant
    "accept4": (lib.MVX_HOT_ACCEPT4, "replicated"),  # AF_INET, notified: the leader's monitor accepts
    "epoll_ctl": (lib.MVX_HOT_EPOLL_CTL, "local"),  # made in every variant; both registries follow it
}
RAW_ALIASES = {"epoll_pwait": {"epoll_wait": lib.MVX_HOT_EPOLL_WAIT},
               "sendfile": {"sendfile64": lib.MVX_HOT_SENDFILE64},
               "clock_gettime": {"clock_gettime64": lib.MVX_HOT_CLOCK64}}  # raw names of one canonical call
OWN_WORLD_ONLY = {"pread64"}
ISA_INDEX = {"x86_64": 0, "i386": 1, "aarch64": 2}  # MVX_ISA_* of mvx_tables.h
LEADER, FOLLOWER = lib.MVX_ROLE_LEADER, lib.MVX_ROLE_FOLLOWER


def wanted() -> bool:
    return os.environ.get("MVX_FAST", "1") != "0"


class FastPath:
    """One monitor's C loop. `ready` (set before each wait) says whether Python holds state the
    loop cannot see (a deferred signal, a record read ahead, an unanswered call)."""

    def __init__(self, variant, role: int, policy, *, link=None, inbox=None, reply_chan=None, outbox=None,
                 check_timeout: float = 15.0) -> None:
        self.native = ffi.gc(lib.mvx_fast_new(variant.native, role), lib.mvx_fast_free)
        lib.mvx_fast_configure(self.native, link.native if link is not None else ffi.NULL,
                               inbox.native if inbox is not None else ffi.NULL,
                               reply_chan if reply_chan is not None else ffi.NULL,
                               int(check_timeout * 1000), 16)
        if outbox is not None:  # write-behind: outputs are held in the one outbox Python holds in too
            lib.mvx_fast_set_outbox(self.native, outbox.native)
        lib.mvx_fast_set_batching(self.native, int(os.environ.get("MVX_FAST_BATCH", "0") == "1"))
        lib.mvx_fast_set_accept_fault(self.native, accept_fault_signal())
        if link is not None:  # the leader's thread reads its channels itself while in the C loop
            lib.mvx_fast_set_own_link(self.native, int(os.environ.get("MVX_LEADER_READS", "1") == "1"),
                                      int(os.environ.get("MVX_SPIN_US", "0")))
        synced = policy.synced()
        self.names = {name for name, (hot, cls) in HOT.items()
                      if name in synced and policy.class_of(name) == cls
                      and (name not in OWN_WORLD_ONLY
                           or (name in policy.in_world and policy.class_of(name, True) == "local"))}
        set_hot_tables(self.native, self.names)
        self._pid = ffi.new("int *")
        self._nr = ffi.new("long long *")
        self._args = ffi.new("unsigned long long[6]")
        self._ret = ffi.new("long long *")
        self._new_fd = ffi.new("int *")
        self._cloexec = ffi.new("int *")
        self._addrlen_in = ffi.new("int *")
        self._fdev = ffi.new("struct mvx_fdev[64]")

    @property
    def handled(self) -> int:
        """Hot calls the C loop carried."""
        return lib.mvx_fast_handled(self.native)

    def before_wait(self, enabled: bool, seq: int) -> None:
        lib.mvx_fast_set_state(self.native, int(enabled), seq)

    def seq(self) -> int:
        return lib.mvx_fast_seq(self.native)

    def take_pending(self) -> tuple[tuple, Performed] | None:
        """A call the loop performed whose answer found it gone: ((pid, nr, args), its result); an
        accepted connection is then Python's to install in the restarted call."""
        if not lib.mvx_fast_take_pending(self.native, self._pid, self._nr, self._args, self._ret, self._new_fd,
                                         self._cloexec, self._addrlen_in):
            return None
        fd = self._new_fd[0]
        room = self._addrlen_in[0]
        done = Performed(self._ret[0], new_fd=fd if fd >= 0 else None, cloexec=bool(self._cloexec[0]),
                         addrlen_in=room if room >= 0 else None)
        return (self._pid[0], self._nr[0], tuple(self._args)), done

    def take_fd_events(self) -> list:
        """What the loop did to the fd table since the last call, in order (struct mvx_fdev:
        kind MVX_FDEV_*, fd, dup, op, data; mvx.runtime.fdshadow.FdShadow.after_fast)."""
        buf = self._fdev
        out = []
        while n := lib.mvx_fast_take_fd_events(self.native, buf, 64):
            out += [(e.kind, e.fd, e.dup, e.op, e.data) for e in buf[0:n]]
        return out

    def set_placeholder(self, fd: int, on: bool) -> None:
        """A follower's `fd` is (or is no longer) a placeholder for a socket only the leader has."""
        if 0 <= fd < 65536:
            lib.mvx_fast_set_placeholder(self.native, fd, int(on))

    def set_dup(self, fd: int, dup: int) -> None:
        """The monitor's duplicate of `fd` (-1: none), without changing what the fd is."""
        if 0 <= fd < 65536:
            lib.mvx_fast_set_dup(self.native, fd, dup)

    def set_fd(self, fd: int, what: int, dup: int = -1) -> None:
        """What `fd` is (MVX_FD_LEADERS, MVX_FD_OWN, 0: unknown) and the monitor's duplicate."""
        if 0 <= fd < 65536:
            lib.mvx_fast_set_fd(self.native, fd, what, dup)

    def forget_fds(self) -> None:
        lib.mvx_fast_forget_fds(self.native)

    def epoll_ctl(self, epfd: int, fd: int, data: int | None) -> None:
        """A registration (data) or its end (None), as EpollRegistry.on_ctl keeps it."""
        lib.mvx_fast_epoll_ctl(self.native, epfd, fd, int(data is not None), 0 if data is None else data & (2**64 - 1))

    def epoll_close(self, fd: int) -> None:
        lib.mvx_fast_epoll_close(self.native, fd)

    def epoll_clear(self) -> None:
        lib.mvx_fast_epoll_clear(self.native)

    def error(self) -> str:
        return ffi.string(lib.mvx_fast_error(self.native)).decode(errors="replace")


def set_hot_tables(native, names) -> None:
    """The C loop's table of hot calls by ISA and raw number (and i386 socketcall's sub-calls), for
    the canonical `names` it carries."""
    from mvx.isa.syscalls import ALIASES, SOCKETCALL_SUBCALLS

    for a in archmod.ARCHES.values():
        _epoll_tables(native, a)
        for name in names:
            hot = HOT[name][0]
            for raw, how in {name: hot, **RAW_ALIASES.get(name, {})}.items():
                try:
                    nr = a.nr(raw)
                except archmod.UnknownSyscall:  # not a call of this ISA
                    continue
                lib.mvx_fast_set_hot(native, ISA_INDEX[a.name], a.audit_arch, nr, how)
        if "socketcall" not in a.numbers:
            continue
        subs = {sub: HOT[canon][0] for sub, (raw, _) in SOCKETCALL_SUBCALLS.items()
                if (canon := ALIASES[raw].target if raw in ALIASES else raw) in names}
        for sub, hot in subs.items():
            lib.mvx_fast_set_socketcall(native, sub, hot)
        if subs:
            lib.mvx_fast_set_hot(native, ISA_INDEX[a.name], a.audit_arch, a.nr("socketcall"), lib.MVX_HOT_SOCKETCALL)


def _epoll_tables(native, a) -> None:
    """The names of each epoll event bit on `a` (as mvx.isa.canonical decodes them) and its
    epoll_event layout, for the C loop's records and answers."""
    from mvx.isa import syscalls as S
    from mvx.isa.canonical import decode_flags

    for bit in range(32):
        fs = decode_flags(a, S.EPOLL_EVENTS, 1 << bit)
        name = next(iter(fs.names)) if len(fs.names) == 1 and not fs.rest else None
        lib.mvx_fast_set_epoll_bit(native, ISA_INDEX[a.name], bit, name.encode() if name else ffi.NULL)
    lay = a.layout("epoll_event")
    lib.mvx_fast_set_epoll_layout(native, ISA_INDEX[a.name], lay.size, lay.fields["data"].offset)


def accept_fault_signal() -> int:
    """Tests only (MVX_FAULT_ACCEPT_SIGNAL=N): signal N is sent to the leader's program between the
    monitor's accept and the install of the connection, so every accepted connection waits for the
    call made again (Monitor.answer_again). 0: none."""
    try:
        return int(os.environ.get("MVX_FAULT_ACCEPT_SIGNAL", "0"))
    except ValueError:
        return 0
