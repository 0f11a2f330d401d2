"""The canonical, ISA-neutral syscall table: argument kinds, aliases, multiplexers.

Everything here is data (in the spirit of rr's src/syscalls.py and strace's syscallent tables):

- `SPECS`: canonical name -> `Spec` (argument names and kinds, return kind).
- `ALIASES` / `ARCH_ALIASES`: raw name -> `Alias` (canonical target + how the canonical arguments
  are built from the raw ones). `ARCH_ALIASES[arch]` overrides `ALIASES` for one ISA (i386 passes
  64-bit values in two registers; i386 and aarch64 swap clone's tid/tls).
- `DEMUX`: raw syscalls that multiplex several calls (i386 `socketcall`, `ipc`, old `mmap`, old
  `select`); they are resolved to a raw sub-call, which then goes through the aliases.

A raw name with neither alias nor spec is its own canonical name with `generic_spec()` (six
`Long` args), so no raw number of any arch table is ever "unknown".

Alias argument sources (`Alias.args`, one per canonical argument):
  int          raw argument index
  "NAME|NAME"  constant(s) of the arch (e.g. "AT_FDCWD", "O_CREAT|O_WRONLY|O_TRUNC")
  Lit(v)       a literal: an int goes through the canonical kind's decoding like a raw value;
               anything else (str, bytes, None) is taken as the already-decoded value
  Pair(lo, hi) a 64-bit value passed in two 32-bit registers (hi << 32 | lo)
  Mul(i, k)    raw argument i times k (mmap2's page offset)
  MsToTime(i)  an int milliseconds timeout turned into a decoded time value (None if negative)
`Alias.layouts` renames struct layouts used by the canonical kinds (e.g. stat -> stat64,
timespec -> timespec64 for `*_time64`), `Alias.kinds` replaces whole kinds by canonical index,
and `Alias.ret_from_arg` says the canonical result is written through a pointer (_llseek).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from mvx import MvxError
from mvx.isa.arch import get as _arch

# --------------------------------------------------------------------------------------------------
# Argument kinds
# --------------------------------------------------------------------------------------------------


class Kind:
    """Base of all argument kinds. `compared` is False for kinds never compared across variants."""

    compared = True
    direction = "in"  # "in", "out" (decoded after the call), "inout" (both)

    def layouts(self) -> tuple[str, ...]:
        return ()

    def with_layouts(self, mapping: dict[str, str]) -> Kind:
        return self


@dataclass(frozen=True)
class Int(Kind):
    """A signed integer of C type `size`: "int" (32 bits), "long" (word size), "s64"."""

    size: str = "int"
    compared: bool = True


@dataclass(frozen=True)
class Uint(Kind):
    """An unsigned integer of C type `size`: "int", "long" (size_t), "u64"."""

    size: str = "int"
    compared: bool = True


def Long(compared: bool = True) -> Int:
    return Int("long", compared)


def Ulong(compared: bool = True) -> Uint:
    return Uint("long", compared)


def Int64() -> Int:
    return Int("s64")


@dataclass(frozen=True)
class Fd(Kind):
    """A file descriptor (C int)."""


@dataclass(frozen=True)
class DirFd(Kind):
    """A directory fd of the *at calls: AT_FDCWD decodes to the string "AT_FDCWD"."""


@dataclass(frozen=True)
class Ptr(Kind):
    """An address: kept as `Addr`, never compared."""

    compared = False


@dataclass(frozen=True)
class Signal(Kind):
    """A signal number, decoded to its name (SIGTERM)."""


@dataclass(frozen=True)
class FileMode(Kind):
    """File mode bits (rendered in octal)."""


@dataclass(frozen=True)
class Uid(Kind):
    """A uid/gid; bits=16 for i386's old 16-bit calls (0xffff means -1)."""

    bits: int = 32


@dataclass(frozen=True)
class Flags(Kind):
    """A flag word decoded to a `FlagSet` of names of a constant family.

    family: a prefix ("O_") or an explicit tuple of names. fields: (mask, names) pairs decoded as
    one enumerated value each (O_ACCMODE -> O_RDONLY/O_WRONLY/O_RDWR); a mask is a constant name
    or an int. drop: names whose bits are removed silently. signal_mask: low bits holding a
    signal (clone's exit signal). exclude: names of the family never used (aliases, masks).
    """

    family: str | tuple[str, ...]
    fields: tuple[tuple[str | int, tuple[str, ...]], ...] = ()
    drop: tuple[str, ...] = ()
    signal_mask: int = 0
    exclude: tuple[str, ...] = ()
    size: str = "int"


@dataclass(frozen=True)
class Enum(Kind):
    """One value of a constant family (prefix or explicit names), decoded to its name.
    canon: name -> preferred name (F_GETLK64 -> F_GETLK); drop_bits: bits cleared first."""

    family: str | tuple[str, ...]
    canon: tuple[tuple[str, str], ...] = ()
    drop_bits: int = 0
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Path(Kind):
    """A NUL-terminated string the call reads (bytes)."""


@dataclass(frozen=True)
class StrArray(Kind):
    """A NULL-terminated array of string pointers (execve argv/envp): tuple of bytes."""


@dataclass(frozen=True)
class InBuf(Kind):
    """Bytes the call reads; length from raw canonical argument `len_arg` (or fixed `size`)."""

    len_arg: int | None = None
    size: int | None = None


@dataclass(frozen=True)
class OutBuf(Kind):
    """Bytes the call writes. Their length is the return value (len_from_ret), else the value of
    argument `len_arg`, else the int pointed to by argument `len_ptr_arg` after the call."""

    len_arg: int | None = None
    len_from_ret: bool = True
    len_ptr_arg: int | None = None
    direction = "out"


@dataclass(frozen=True)
class _StructKind(Kind):
    layout: str

    def layouts(self):
        return (self.layout,)

    def with_layouts(self, mapping):
        return replace(self, layout=mapping.get(self.layout, self.layout))


@dataclass(frozen=True)
class InStruct(_StructKind):
    """A struct of `layout` the call reads."""


@dataclass(frozen=True)
class OutStruct(_StructKind):
    """A struct of `layout` the call writes."""

    direction = "out"


@dataclass(frozen=True)
class InOutStruct(_StructKind):
    """A struct of `layout` the call reads and writes."""

    direction = "inout"


@dataclass(frozen=True)
class StructArray(Kind):
    """An array of `layout` structs; the count is argument `count_arg`, a fixed `count`, or the
    return value (`count_from_ret`, for outputs like epoll_pwait's events)."""

    layout: str
    count_arg: int | None = None
    dir: str = "in"
    count_from_ret: bool = False
    count: int | None = None

    @property
    def direction(self):  # type: ignore[override]
        return self.dir

    def layouts(self):
        return (self.layout,)

    def with_layouts(self, mapping):
        return replace(self, layout=mapping.get(self.layout, self.layout))


@dataclass(frozen=True)
class IovecIn(Kind):
    """An iovec array the call gathers from (writev): decoded to an `IoVec` of the parts."""

    count_arg: int


@dataclass(frozen=True)
class IovecOut(Kind):
    """An iovec array the call scatters `ret` bytes into (readv)."""

    count_arg: int
    direction = "out"


@dataclass(frozen=True)
class SockAddrIn(Kind):
    """A sockaddr the call reads, `len_arg` bytes long (decoded by family)."""

    len_arg: int


@dataclass(frozen=True)
class SockAddrOut(Kind):
    """A sockaddr the call writes; its length is in the socklen_t at argument `len_ptr_arg`."""

    len_ptr_arg: int
    direction = "out"


@dataclass(frozen=True)
class InOutInt(Kind):
    """A pointer to an integer the call reads and writes (socklen_t *, sendfile's off_t *)."""

    size: str = "int"
    direction = "inout"


@dataclass(frozen=True)
class OutInt(Kind):
    """A pointer to an integer the call writes (wait4's status)."""

    size: str = "int"
    direction = "out"


@dataclass(frozen=True)
class OutInts(Kind):
    """A pointer to `count` C ints the call writes (pipe2, socketpair)."""

    count: int
    direction = "out"


@dataclass(frozen=True)
class SigSetIn(Kind):
    """A sigset the call reads, decoded to a frozenset of signal names. Its byte size is the value
    of argument `size_arg`, or a fixed `size` (old 4-byte sigsets of i386)."""

    size_arg: int | None = None
    size: int | None = None


@dataclass(frozen=True)
class SigSetOut(Kind):
    size_arg: int | None = None
    size: int | None = None
    direction = "out"


@dataclass(frozen=True)
class FdSet(Kind):
    """An fd_set of select, read and written: decoded to a frozenset of fds below argument
    `nfds_arg`."""

    nfds_arg: int = 0
    direction = "inout"


@dataclass(frozen=True)
class MsgHdrIn(Kind):
    """sendmsg's struct msghdr: decoded to {name, iov, control, flags}."""


@dataclass(frozen=True)
class MsgHdrOut(Kind):
    """recvmsg's struct msghdr: the iovecs and name/control the call fills."""

    direction = "inout"


@dataclass(frozen=True)
class Dirents(Kind):
    """getdents64's buffer: `ret` bytes of linux_dirent64 records (getdents: linux_dirent)."""

    layout: str = "linux_dirent64"
    direction = "out"

    def layouts(self):
        return (self.layout,)

    def with_layouts(self, mapping):
        return replace(self, layout=mapping.get(self.layout, self.layout))


@dataclass(frozen=True)
class Switch(Kind):
    """The kind of this argument depends on the decoded value of argument `on` (fcntl's arg by
    cmd, ioctl's by request): `cases` maps a decoded name to a kind; `default` otherwise."""

    on: int
    cases: tuple[tuple[str, Kind], ...]
    default: Kind = Uint("long")
    # cases matched first on the selector's raw value, as the caller's ISA spells the constant:
    # commands whose decoded name is another's (i386 F_GETLK64 decodes to F_GETLK, but its
    # argument is a struct flock64)
    raw: tuple[tuple[str, Kind], ...] = ()

    def pick(self, selector: Any, raw_value: int | None = None, consts=None) -> Kind:
        if raw_value is not None and consts is not None:
            for key, kind in self.raw:
                if consts(key) == raw_value:
                    return kind
        names = selector.names if isinstance(selector, FlagSet) else (selector,)
        for key, kind in self.cases:
            if key in names:
                return kind
        return self.default

    def all_kinds(self) -> tuple[Kind, ...]:
        return tuple(k for _, k in self.raw) + tuple(k for _, k in self.cases) + (self.default,)

    def layouts(self):
        return tuple(lay for k in self.all_kinds() for lay in k.layouts())

    def with_layouts(self, mapping):
        return replace(self, cases=tuple((n, k.with_layouts(mapping)) for n, k in self.cases),
                       raw=tuple((n, k.with_layouts(mapping)) for n, k in self.raw),
                       default=self.default.with_layouts(mapping))


# --------------------------------------------------------------------------------------------------
# Decoded values shared by canonical.py, structs.py and render.py
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagSet:
    """A decoded flag word: ISA-neutral names plus the bits no name covered."""

    names: frozenset[str]
    rest: int = 0


@dataclass(frozen=True)
class Addr:
    """An address (Ptr kinds, or a pointer not decoded yet): excluded from comparison."""

    value: int

    def __repr__(self):
        return "NULL" if self.value == 0 else hex(self.value)


class _Unknown:
    """An argument that could not be decoded (socketcall args without a memory reader)."""

    _inst = None

    def __new__(cls):
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self):
        return "?"


UNKNOWN = _Unknown()


# --------------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traits:
    """What is true of a call itself, whatever the policy (in the spirit of strace's per-call flags
    TD/TN/TCL...): the monitors, the sync core and the C tables read these, never a list of names.

    clock_read        returns a reading of a clock: compared as one clock, answered in each
                      follower's own form; `clock` names the clock when no argument does
    clock_result      its result or out-data holds another reading of a clock (ticks, time left on a
                      timer or a sleep, CPU time, uptime): the default policy replicates it, so every
                      variant sees the leader's reading (tests/test_sync.py checks the policy); timer
                      setters too (their old value): a follower's own timer would only raise signals
                      it drops, the leader's are replicated to it. Not clock_nanosleep: its time left
                      is written only when a signal interrupts it, and a synced sleep that a signal
                      interrupts is restarted by the kernel as restart_syscall, which no monitor
                      follows (the leader's call would go unrecorded: docs/DESIGN.md)
    blocks            can block, so a signal may natively interrupt it (EINTR or a restart)
    takes_signals     takes pending signals without a handler: "fd" when its fd is a signalfd (the
                      fd's own mask), else the argument naming the set (rt_sigtimedwait); the leader
                      publishes what it has pending there first, and each follower sends itself
                      what it lacks of that (SignalBatch how="taken"), so every variant takes the same
    waits_for_signal  sleeps until a signal is handled, then fails with EINTR (never restarted):
                      the leader's monitor lets it sleep in the variant, and the signal that wakes
                      it is replicated as the call's own point of sync (SignalBatch how="suspend")
    ends              ends the program (its result is never seen)
    fd_table_only     changes only the caller's fd table: a monitor may let it run without learning
                      its result, and a follower runs it even on a placeholder fd
    follower_runs     a follower always executes it, whatever its class (skipping it would leave
                      the follower's fd table apart from the leader's)
    ret_not_compared  its result legitimately differs between ISAs (F_GETFL bits, ...)
    word_sized        the argument that is one machine word of the caller's ISA when the source
                      says sizeof(long): compared as "one word", replayed at the follower's width
    compared_only     the only arguments compared (None: all)
    fields_not_compared  ((argument, (struct fields never compared)), ...): program-chosen cookies
    unused_for        (command argument, argument, commands that do not read it)
    view_as           compared in another call's shape ("stat": statx/fstatat as one fstatat)
    perform           how a hybrid monitor performs the call itself (mvx.mechanics.proxy), None: it cannot
    trace_when_set    arguments that must be 0 (NULL) for the monitor to perform it: with one set (a
                      signal mask, which only the variant can apply to itself) the hybrid filter
                      traps the call with RET_TRACE instead of notifying it (a seccomp argument
                      condition: `filters.build_bpf`), so it runs in the variant and its result is
                      learned at its exit stop
    sends             the argument holding the bytes the call sends to its fd (write, writev, sendto)
    sends_file        the argument naming a file whose bytes the call sends: compared by digest
    shuts_down        it ends the sending (or receiving) side of its socket
    changes_fs_when   (argument, flags): with any of these flags the call can change the file
                      system, so the leader waits for the followers' check first
    shadow            its effect on the monitor's shadow of the fd table: "epoll_ctl", "close",
                      "dup", "pair" (two new fds), "exec"
    sends_fds         its msghdr can pass fds (SCM_RIGHTS): sent over a socket of the variant's own
                      world, the monitor notes whether each was of that world (FdShadow.sent)
    receives_fds      its out-data can bring new fds (SCM_RIGHTS): received over a socket of the
                      variant's own world, each is of that world when the fd the variant sent was
                      (as dup's "same"); an fd whose sending was not seen is the leader's (fail closed)
    world_fd          the new fds it makes belong to the variant's own world when they are of these
                      kinds (procinfo.FdKinds: "file", "dir", "pipe", "socket", "signalfd", "other"): calls on
                      them run in every variant (Policy.in_world); "same" for dup: as the old fd is
    changes_fs        always changes the file system (unlinkat, renameat2, ftruncate...): a follower
                      does it in its own world before the leader does it in the real one
    chosen_name       (path argument, flags argument or None, flags it must have): a new file's name
                      that libc may have made at random (mkstemp's six characters, from a stack
                      address and a clock): the follower takes the leader's (FollowerSync.chosen_name)
    """

    clock_read: bool = False
    clock: str | None = None
    clock_result: bool = False
    blocks: bool = False
    waits_for_signal: bool = False
    takes_signals: str | None = None
    ends: bool = False
    fd_table_only: bool = False
    follower_runs: bool = False
    ret_not_compared: bool = False
    word_sized: str | None = None
    compared_only: tuple[str, ...] | None = None
    fields_not_compared: tuple[tuple[str, tuple[str, ...]], ...] = ()
    unused_for: tuple[str, str, frozenset[str]] | None = None
    view_as: str | None = None
    perform: str | None = None
    trace_when_set: tuple[str, ...] = ()
    sends: str | None = None
    sends_file: str | None = None
    shuts_down: bool = False
    changes_fs_when: tuple[str, frozenset[str]] | None = None
    shadow: str | None = None
    sends_fds: bool = False
    receives_fds: bool = False
    world_fd: tuple[str, ...] = ()
    changes_fs: bool = False
    chosen_name: tuple[str, str | None, frozenset[str]] | None = None

    def describe(self) -> list[str]:
        """The traits that are set, one "name: value" each (mvx syscalls --canonical)."""
        out = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value in (False, None, ()):
                continue
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = tuple(sorted(v) if isinstance(v, frozenset) else v for v in value)
            out.append(name if value is True else f"{name}: {value}")
        return out


NO_TRAITS = Traits()


@dataclass(frozen=True)
class Spec:
    name: str
    arg_names: tuple[str, ...]
    kinds: tuple[Kind, ...]
    ret: Kind = field(default_factory=Long)
    generic: bool = False
    traits: Traits = NO_TRAITS

    @property
    def nargs(self) -> int:
        return len(self.kinds)

    def signature(self) -> str:
        return f"{self.name}({', '.join(self.arg_names)})"

    def with_layouts(self, mapping: dict[str, str]) -> Spec:
        if not mapping:
            return self
        return replace(self, kinds=tuple(k.with_layouts(mapping) for k in self.kinds))


def _k(kind) -> Kind:
    return kind if isinstance(kind, Kind) else kind()


def sc(name: str, ret=None, traits: Traits = NO_TRAITS, /, **args) -> Spec:
    """Declare a spec: sc("read", Long, Traits(blocks=True), fd=Fd, buf=OutBuf(2), count=Ulong)."""
    return Spec(name, tuple(a.rstrip("_") for a in args), tuple(_k(k) for k in args.values()),
                _k(ret) if ret is not None else Long(), traits=traits)


def generic_spec(name: str) -> Spec:
    """The spec of a syscall without a specific one: six raw word-sized arguments."""
    return Spec(name, tuple(f"arg{i}" for i in range(6)), tuple(Long() for _ in range(6)), Long(), True)


# Constant families used by several specs (explicit lists keep decoding ISA-neutral and stable).
O_FLAGS = Flags("O_", fields=(("O_ACCMODE", ("O_RDONLY", "O_WRONLY", "O_RDWR")),),
                drop=("O_LARGEFILE",),
                exclude=("O_NDELAY", "O_FSYNC", "O_RSYNC", "O_ACCMODE", "O_RDONLY", "O_WRONLY", "O_RDWR"))
AT_FLAGS = Flags(("AT_SYMLINK_NOFOLLOW", "AT_REMOVEDIR", "AT_SYMLINK_FOLLOW", "AT_NO_AUTOMOUNT",
                  "AT_EMPTY_PATH", "AT_EACCESS", "AT_RECURSIVE", "AT_STATX_FORCE_SYNC",
                  "AT_STATX_DONT_SYNC"))
CLOEXEC_NONBLOCK = Flags(("O_CLOEXEC", "O_NONBLOCK"))
SOCK_TYPE = Flags(("SOCK_CLOEXEC", "SOCK_NONBLOCK"),
                  fields=((0xF, ("SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW", "SOCK_RDM", "SOCK_SEQPACKET",
                                 "SOCK_DCCP", "SOCK_PACKET")),))
SOCK_FLAGS = Flags(("SOCK_CLOEXEC", "SOCK_NONBLOCK"))
MSG_FLAGS = Flags("MSG_", exclude=("MSG_TRYHARD",))
PROT_FLAGS = Flags("PROT_", exclude=("PROT_NONE",))
MAP_FLAGS = Flags("MAP_", fields=(("MAP_TYPE", ("MAP_SHARED", "MAP_PRIVATE", "MAP_SHARED_VALIDATE")),),
                  exclude=("MAP_TYPE", "MAP_FILE", "MAP_HUGE_MASK", "MAP_HUGE_SHIFT", "MAP_SHARED",
                           "MAP_PRIVATE", "MAP_SHARED_VALIDATE", "MAP_EXECUTABLE", "MAP_DENYWRITE"))
CLONE_FLAGS = Flags("CLONE_", signal_mask=0xFF, size="long")
EPOLL_EVENTS = Flags(("EPOLLIN", "EPOLLPRI", "EPOLLOUT", "EPOLLERR", "EPOLLHUP", "EPOLLNVAL",
                      "EPOLLRDNORM", "EPOLLRDBAND", "EPOLLWRNORM", "EPOLLWRBAND", "EPOLLMSG",
                      "EPOLLRDHUP", "EPOLLEXCLUSIVE", "EPOLLWAKEUP", "EPOLLONESHOT", "EPOLLET"))
POLL_EVENTS = Flags(("POLLIN", "POLLPRI", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL", "POLLRDNORM",
                     "POLLRDBAND", "POLLWRNORM", "POLLWRBAND", "POLLMSG", "POLLRDHUP"))
SA_FLAGS = Flags("SA_", exclude=("SA_NOMASK", "SA_ONESHOT", "SA_UNSUPPORTED", "SA_EXPOSE_TAGBITS"))
WAIT_FLAGS = Flags(("WNOHANG", "WUNTRACED", "WCONTINUED", "WEXITED", "WSTOPPED", "WNOWAIT",
                    "__WNOTHREAD", "__WALL", "__WCLONE"))
FUTEX_OP = Flags(("FUTEX_PRIVATE_FLAG", "FUTEX_CLOCK_REALTIME"),
                 fields=((0x7F, ("FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_FD", "FUTEX_REQUEUE", "FUTEX_CMP_REQUEUE",
                                 "FUTEX_WAKE_OP", "FUTEX_LOCK_PI", "FUTEX_UNLOCK_PI", "FUTEX_TRYLOCK_PI",
                                 "FUTEX_WAIT_BITSET", "FUTEX_WAKE_BITSET", "FUTEX_WAIT_REQUEUE_PI",
                                 "FUTEX_CMP_REQUEUE_PI", "FUTEX_LOCK_PI2")),))
SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
           "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD",
           "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ",
           "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS")
F_CMDS = Enum(("F_DUPFD", "F_GETFD", "F_SETFD", "F_GETFL", "F_SETFL", "F_GETLK", "F_SETLK", "F_SETLKW",
               "F_SETOWN", "F_GETOWN", "F_SETSIG", "F_GETSIG", "F_SETOWN_EX", "F_GETOWN_EX",
               "F_GETLK64", "F_SETLK64", "F_SETLKW64", "F_OFD_GETLK", "F_OFD_SETLK", "F_OFD_SETLKW",
               "F_SETLEASE", "F_GETLEASE", "F_NOTIFY", "F_DUPFD_CLOEXEC", "F_SETPIPE_SZ", "F_GETPIPE_SZ",
               "F_ADD_SEALS", "F_GET_SEALS", "F_GET_RW_HINT", "F_SET_RW_HINT", "F_GET_FILE_RW_HINT",
               "F_SET_FILE_RW_HINT", "F_CANCELLK"),
              canon=(("F_GETLK64", "F_GETLK"), ("F_SETLK64", "F_SETLK"), ("F_SETLKW64", "F_SETLKW")))
_NOT_READ = Ulong(False)  # an argument the command does not read: never compared
FCNTL_ARG = Switch(1, (("F_SETFL", O_FLAGS), ("F_SETFD", Flags(("FD_CLOEXEC",))), ("F_DUPFD", Fd()),
                       ("F_DUPFD_CLOEXEC", Fd()), ("F_SETOWN", Int()), ("F_SETSIG", Signal()),
                       ("F_SETLEASE", Int()), ("F_NOTIFY", Uint()), ("F_SETPIPE_SZ", Int()),
                       ("F_ADD_SEALS", Uint()),
                       ("F_GETFL", _NOT_READ), ("F_GETFD", _NOT_READ), ("F_GETOWN", _NOT_READ),
                       ("F_GETSIG", _NOT_READ), ("F_GETLEASE", _NOT_READ), ("F_GETPIPE_SZ", _NOT_READ),
                       ("F_GET_SEALS", _NOT_READ),
                       ("F_SETOWN_EX", InStruct("f_owner_ex")), ("F_GETOWN_EX", OutStruct("f_owner_ex")),
                       ("F_GET_RW_HINT", OutInt("u64")), ("F_SET_RW_HINT", InOutInt("u64")),
                       ("F_GET_FILE_RW_HINT", OutInt("u64")), ("F_SET_FILE_RW_HINT", InOutInt("u64")),
                       # fcntl64's 64-bit lock commands (raw, below) and the OFD ones take a flock64
                       # on a 32-bit ISA; a 64-bit ISA's flock64 is its flock (structs.layout)
                       ("F_GETLK", InOutStruct("flock")), ("F_SETLK", InStruct("flock")),
                       ("F_SETLKW", InStruct("flock")), ("F_OFD_GETLK", InOutStruct("flock64")),
                       ("F_OFD_SETLK", InStruct("flock64")), ("F_OFD_SETLKW", InStruct("flock64"))),
                   Ulong(),
                   raw=(("F_GETLK64", InOutStruct("flock64")), ("F_SETLK64", InStruct("flock64")),
                        ("F_SETLKW64", InStruct("flock64"))))
IOCTL_REQ = Enum(("TCGETS", "TCSETS", "TCSETSW", "TCSETSF", "TIOCGWINSZ", "TIOCSWINSZ", "TIOCGPGRP",
                  "TIOCSPGRP", "FIONREAD", "FIONBIO", "FIOCLEX", "FIONCLEX", "FIOASYNC", "TIOCSCTTY",
                  "TIOCNOTTY", "TIOCOUTQ", "TCFLSH", "TCXONC", "TIOCGPTN", "TIOCSPTLCK"))
IOCTL_ARG = Switch(1, (("FIONBIO", InOutInt()), ("FIOASYNC", InOutInt()), ("FIONREAD", OutInt()),
                       ("TIOCOUTQ", OutInt()), ("TIOCGPTN", OutInt()), ("TIOCSPTLCK", InOutInt()),
                       ("TIOCGWINSZ", OutStruct("winsize")), ("TIOCSWINSZ", InStruct("winsize")),
                       ("TIOCGPGRP", OutInt()), ("TIOCSPGRP", InOutInt()),
                       ("TCGETS", OutStruct("termios")), ("TCSETS", InStruct("termios")),
                       ("TCSETSW", InStruct("termios")), ("TCSETSF", InStruct("termios")),
                       ("TCFLSH", Int()), ("TCXONC", Int()), ("TIOCSCTTY", Int()),
                       ("FIOCLEX", _NOT_READ), ("FIONCLEX", _NOT_READ), ("TIOCNOTTY", _NOT_READ)), Ptr())
SOCKOPT_NAME = Switch(1, (("SOL_SOCKET", Enum("SO_", canon=(("SO_RCVTIMEO_OLD", "SO_RCVTIMEO"),
                                                               ("SO_RCVTIMEO_NEW", "SO_RCVTIMEO"),
                                                               ("SO_SNDTIMEO_OLD", "SO_SNDTIMEO"),
                                                               ("SO_SNDTIMEO_NEW", "SO_SNDTIMEO"),
                                                               ("SO_TIMESTAMP_OLD", "SO_TIMESTAMP"),
                                                               ("SO_TIMESTAMP_NEW", "SO_TIMESTAMP")),
                                                  exclude=("SO_GET_FILTER", "SO_DETACH_BPF",
                                                           "SO_ATTACH_BPF"))),
                          ("IPPROTO_TCP", Enum("TCP_")), ("SOL_TCP", Enum("TCP_"))), Int())
LEVELS = Enum(("SOL_SOCKET", "IPPROTO_IP", "IPPROTO_TCP", "IPPROTO_UDP", "IPPROTO_IPV6", "SOL_IP",
               "SOL_TCP", "SOL_UDP", "SOL_IPV6"),
              canon=(("SOL_IP", "IPPROTO_IP"), ("SOL_TCP", "IPPROTO_TCP"), ("SOL_UDP", "IPPROTO_UDP"),
                     ("SOL_IPV6", "IPPROTO_IPV6")))
AF = Enum("AF_", exclude=("AF_LOCAL", "AF_ROUTE", "AF_FILE", "AF_MAX"))
SIGHOW = Enum(("SIG_BLOCK", "SIG_UNBLOCK", "SIG_SETMASK"))
CLOCKS = Enum("CLOCK_")
IPC_CMD = Enum(("IPC_RMID", "IPC_SET", "IPC_STAT", "IPC_INFO", "GETPID", "GETVAL", "GETALL", "GETNCNT",
                "GETZCNT", "SETVAL", "SETALL", "SEM_STAT", "SEM_INFO", "MSG_STAT", "MSG_INFO",
                "SHM_STAT", "SHM_INFO", "SHM_LOCK", "SHM_UNLOCK"), drop_bits=0x100)  # IPC_64
PR_OPTION = Enum("PR_")
PRCTL_ARG2 = Switch(0, (("PR_SET_NAME", Path()), ("PR_GET_NAME", Ptr()), ("PR_SET_PDEATHSIG", Signal())),
                    Ulong())
FUTEX_TIMEOUT = Switch(1, (("FUTEX_WAIT", InStruct("timespec")), ("FUTEX_WAIT_BITSET", InStruct("timespec")),
                           ("FUTEX_LOCK_PI", InStruct("timespec")), ("FUTEX_LOCK_PI2", InStruct("timespec")),
                           ("FUTEX_WAIT_REQUEUE_PI", InStruct("timespec"))), Uint("long"))
RLIMITS = Enum("RLIMIT_", exclude=("RLIMIT_NLIMITS", "RLIMIT_OFILE"))

# Control messages (sendmsg/recvmsg's msg_control) by (level, type): how their data decodes.
# "fds": an array of C ints that are fds (SCM_RIGHTS, compared as fd numbers); otherwise a struct
# layout of the caller's ISA. Other messages keep their data as bytes.
CMSG_PAYLOADS: dict[tuple[str, str], str] = {
    ("SOL_SOCKET", "SCM_RIGHTS"): "fds",
    ("SOL_SOCKET", "SCM_CREDENTIALS"): "ucred",
}
CMSG_TYPES = {"SOL_SOCKET": Enum(("SCM_RIGHTS", "SCM_CREDENTIALS"))}
# open's mode is read only when the flags create a file (else the register holds anything)
OPEN_MODE = Switch(2, (("O_CREAT", FileMode()), ("O_TMPFILE", FileMode())), _NOT_READ)
# open flags that make an open able to change the file system
WRITE_OPEN_FLAGS = frozenset({"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"})

_SPEC_LIST = [
    # --- file I/O ---
    sc("read", Long, Traits(blocks=True, perform="read", takes_signals="fd"), fd=Fd, buf=OutBuf(2), count=Ulong),
    sc("write", Long, Traits(blocks=True, perform="write", sends="buf"), fd=Fd, buf=InBuf(2), count=Ulong),
    sc("pread64", Long, Traits(perform="pread64"), fd=Fd, buf=OutBuf(2), count=Ulong, offset=Int64),
    sc("pwrite64", Long, fd=Fd, buf=InBuf(2), count=Ulong, offset=Int64),
    sc("readv", Long, Traits(blocks=True, takes_signals="fd"), fd=Fd, iov=IovecOut(2), iovcnt=Int),
    sc("writev", Long, Traits(blocks=True, perform="writev", sends="iov"), fd=Fd, iov=IovecIn(2), iovcnt=Int),
    sc("preadv2", Long, fd=Fd, iov=IovecOut(2), iovcnt=Int, offset=Int64, flags=Flags("RWF_")),
    sc("pwritev2", Long, fd=Fd, iov=IovecIn(2), iovcnt=Int, offset=Int64, flags=Flags("RWF_")),
    sc("openat", Fd, Traits(changes_fs_when=("flags", WRITE_OPEN_FLAGS), world_fd=("file", "dir"),
                        chosen_name=("path", "flags", frozenset({"O_CREAT", "O_EXCL"}))), dirfd=DirFd, path=Path, flags=O_FLAGS, mode=OPEN_MODE),
    sc("openat2", Fd, dirfd=DirFd, path=Path, how=InStruct("open_how"), size=Ulong),
    sc("close", Int, Traits(fd_table_only=True, follower_runs=True, ret_not_compared=True, shadow="close"), fd=Fd),
    sc("close_range", Int, fd=Uint, max_fd=Uint, flags=Flags("CLOSE_RANGE_")),
    sc("fstatat", Int, Traits(view_as="stat"), dirfd=DirFd, path=Path, statbuf=OutStruct("stat"), flags=AT_FLAGS),
    sc("statx", Int, Traits(view_as="stat"), dirfd=DirFd, path=Path, flags=AT_FLAGS, mask=Flags("STATX_"),
       statxbuf=OutStruct("statx")),
    sc("faccessat", Int, dirfd=DirFd, path=Path, mode=Flags(("R_OK", "W_OK", "X_OK")), flags=AT_FLAGS),
    sc("lseek", Int("s64"), fd=Fd, offset=Int64, whence=Enum("SEEK_", exclude=("SEEK_MAX",))),
    sc("ioctl", Int, fd=Fd, request=IOCTL_REQ, arg=IOCTL_ARG),
    sc("fcntl", Long, Traits(ret_not_compared=True, fields_not_compared=(("arg", ("l_pid",)),), unused_for=("cmd", "arg", frozenset({"F_GETFL", "F_GETFD", "F_GETOWN", "F_GETSIG", "F_GETLEASE", "F_GETPIPE_SZ", "F_GET_SEALS"}))), fd=Fd, cmd=F_CMDS, arg=FCNTL_ARG),
    sc("dup", Fd, Traits(world_fd=("same",)), oldfd=Fd),
    sc("dup3", Fd, Traits(shadow="dup", world_fd=("same",)), oldfd=Fd, newfd=Fd, flags=Flags(("O_CLOEXEC",))),
    sc("pipe2", Int, Traits(shadow="pair", world_fd=("pipe",)), pipefd=OutInts(2), flags=Flags(("O_CLOEXEC", "O_NONBLOCK", "O_DIRECT"))),
    sc("getdents64", Long, fd=Fd, dirp=Dirents(), count=Uint),
    sc("truncate", Int, Traits(changes_fs=True), path=Path, length=Int64),
    sc("ftruncate", Int, Traits(changes_fs=True), fd=Fd, length=Int64),
    sc("fsync", Int, fd=Fd),
    sc("fdatasync", Int, fd=Fd),
    sc("fadvise64", Int, fd=Fd, offset=Int64, len_=Int64, advice=Enum("POSIX_FADV_")),
    sc("fallocate", Int, Traits(changes_fs=True), fd=Fd, mode=Flags("FALLOC_FL_"), offset=Int64, len_=Int64),
    sc("readahead", Long, fd=Fd, offset=Int64, count=Ulong),
    sc("statfs", Int, path=Path, buf=OutStruct("statfs")),
    sc("fstatfs", Int, fd=Fd, buf=OutStruct("statfs")),
    sc("flock", Int, fd=Fd, operation=Flags(("LOCK_SH", "LOCK_EX", "LOCK_NB", "LOCK_UN"))),
    sc("sendfile", Long, Traits(blocks=True, sends_file="in_fd"), out_fd=Fd, in_fd=Fd, offset=InOutInt("long"), count=Ulong),
    sc("copy_file_range", Long, fd_in=Fd, off_in=InOutInt("s64"), fd_out=Fd, off_out=InOutInt("s64"),
       len_=Ulong, flags=Uint),
    sc("splice", Long, fd_in=Fd, off_in=InOutInt("s64"), fd_out=Fd, off_out=InOutInt("s64"), len_=Ulong,
       flags=Flags("SPLICE_F_")),
    # --- paths ---
    sc("getcwd", Long, buf=OutBuf(1), size=Ulong),
    sc("chdir", Int, path=Path),
    sc("fchdir", Int, fd=Fd),
    sc("chroot", Int, path=Path),
    sc("mkdirat", Int, Traits(changes_fs=True, chosen_name=("path", None, frozenset())), dirfd=DirFd, path=Path, mode=FileMode),
    sc("mknodat", Int, Traits(changes_fs=True), dirfd=DirFd, path=Path, mode=FileMode, dev=Uint),
    sc("unlinkat", Int, Traits(changes_fs=True), dirfd=DirFd, path=Path, flags=AT_FLAGS),
    sc("renameat2", Int, Traits(changes_fs=True), olddirfd=DirFd, oldpath=Path, newdirfd=DirFd, newpath=Path,
       flags=Flags(("RENAME_NOREPLACE", "RENAME_EXCHANGE", "RENAME_WHITEOUT"))),
    sc("readlinkat", Long, dirfd=DirFd, path=Path, buf=OutBuf(3), bufsiz=Ulong),
    sc("linkat", Int, Traits(changes_fs=True), olddirfd=DirFd, oldpath=Path, newdirfd=DirFd, newpath=Path, flags=AT_FLAGS),
    sc("symlinkat", Int, Traits(changes_fs=True), target=Path, newdirfd=DirFd, linkpath=Path),
    sc("fchmodat", Int, Traits(changes_fs=True), dirfd=DirFd, path=Path, mode=FileMode),
    sc("fchmod", Int, Traits(changes_fs=True), fd=Fd, mode=FileMode),
    sc("fchownat", Int, Traits(changes_fs=True), dirfd=DirFd, path=Path, owner=Uid, group=Uid, flags=AT_FLAGS),
    sc("fchown", Int, Traits(changes_fs=True), fd=Fd, owner=Uid, group=Uid),
    sc("umask", FileMode, mask=FileMode),
    sc("utimensat", Int, Traits(changes_fs=True), dirfd=DirFd, path=Path, times=StructArray("timespec", count=2), flags=AT_FLAGS),
    sc("futimesat", Int, Traits(changes_fs=True), dirfd=DirFd, path=Path, times=StructArray("timeval", count=2)),
    sc("inotify_add_watch", Int, fd=Fd, path=Path, mask=Flags("IN_")),
    sc("mount", Int, source=Path, target=Path, fstype=Path, flags=Ulong, data=Ptr),
    sc("umount2", Int, target=Path, flags=Flags(("MNT_FORCE", "MNT_DETACH", "MNT_EXPIRE",
                                                 "UMOUNT_NOFOLLOW"))),
    sc("execve", Int, Traits(shadow="exec"), path=Path, argv=StrArray, envp=StrArray),
    sc("execveat", Int, Traits(shadow="exec"), dirfd=DirFd, path=Path, argv=StrArray, envp=StrArray, flags=AT_FLAGS),
    # --- memory ---
    sc("mmap", Ptr, addr=Ptr, length=Ulong, prot=PROT_FLAGS, flags=MAP_FLAGS, fd=Fd, offset=Int64),
    sc("munmap", Int, addr=Ptr, length=Ulong),
    sc("mprotect", Int, Traits(ret_not_compared=True, compared_only=("prot",)), addr=Ptr, length=Ulong, prot=PROT_FLAGS),
    sc("madvise", Int, addr=Ptr, length=Ulong, advice=Enum("MADV_")),
    sc("mremap", Ptr, old_address=Ptr, old_size=Ulong, new_size=Ulong,
       flags=Flags(("MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP")), new_address=Ptr),
    sc("brk", Ptr, addr=Ptr),
    sc("msync", Int, addr=Ptr, length=Ulong, flags=Flags(("MS_ASYNC", "MS_INVALIDATE", "MS_SYNC"))),
    sc("mlock", Int, addr=Ptr, length=Ulong),
    sc("munlock", Int, addr=Ptr, length=Ulong),
    sc("memfd_create", Fd, Traits(world_fd=("file",)), name=Path, flags=Flags("MFD_")),
    # --- process, threads ---
    sc("arch_prctl", Int, code=Enum("ARCH_"), addr=Ptr),
    sc("set_tid_address", Int, tidptr=Ptr),
    sc("set_robust_list", Int, head=Ptr, len_=Ulong),
    sc("get_robust_list", Int, pid=Int, head_ptr=Ptr, len_ptr=Ptr),
    sc("rseq", Int, rseq=Ptr, rseq_len=Uint, flags=Int, sig=Uint(compared=False)),
    sc("prlimit64", Int, pid=Int, resource=RLIMITS, new_limit=InStruct("rlimit64"),
       old_limit=OutStruct("rlimit64")),
    sc("getrandom", Long, Traits(word_sized="buflen"), buf=OutBuf(1), buflen=Ulong, flags=Flags("GRND_")),
    sc("exit", Int, Traits(ends=True), status=Int),
    sc("exit_group", Int, Traits(ends=True), status=Int),
    sc("clone", Int, flags=CLONE_FLAGS, stack=Ptr, parent_tid=Ptr, child_tid=Ptr, tls=Ptr),
    sc("clone3", Int, cl_args=InStruct("clone_args"), size=Ulong),
    sc("wait4", Int, Traits(blocks=True), pid=Int, wstatus=OutInt(), options=WAIT_FLAGS, rusage=Ptr),
    sc("waitid", Int, idtype=Enum(("P_ALL", "P_PID", "P_PGID", "P_PIDFD")), id_=Int, infop=Ptr,
       options=WAIT_FLAGS, rusage=Ptr),
    sc("prctl", Int, option=PR_OPTION, arg2=PRCTL_ARG2, arg3=Ulong, arg4=Ulong, arg5=Ulong),
    sc("futex", Long, Traits(blocks=True), uaddr=Ptr, futex_op=FUTEX_OP, val=Uint, timeout=FUTEX_TIMEOUT, uaddr2=Ptr, val3=Uint),
    sc("sched_getaffinity", Int, pid=Int, cpusetsize=Uint("long"), mask=OutBuf(1)),
    sc("sched_setaffinity", Int, pid=Int, cpusetsize=Uint("long"), mask=InBuf(1)),
    sc("sched_yield", Int),
    sc("getpid", Int, Traits(perform="getpid")), sc("getppid", Int), sc("gettid", Int),
    sc("getuid", Int), sc("geteuid", Int), sc("getgid", Int), sc("getegid", Int),
    sc("setuid", Int, uid=Uid), sc("setgid", Int, gid=Uid),
    sc("setreuid", Int, ruid=Uid, euid=Uid), sc("setregid", Int, rgid=Uid, egid=Uid),
    sc("setresuid", Int, ruid=Uid, euid=Uid, suid=Uid), sc("setresgid", Int, rgid=Uid, egid=Uid, sgid=Uid),
    sc("getresuid", Int, ruid=OutInt(), euid=OutInt(), suid=OutInt()),
    sc("getresgid", Int, rgid=OutInt(), egid=OutInt(), sgid=OutInt()),
    sc("getgroups", Int, size=Int, list_=Ptr),
    sc("setgroups", Int, size=Int, list_=Ptr),
    sc("setfsuid", Int, fsuid=Uid), sc("setfsgid", Int, fsgid=Uid),
    sc("getpgid", Int, pid=Int), sc("setpgid", Int, pid=Int, pgid=Int),
    sc("getsid", Int, pid=Int), sc("setsid", Int),
    sc("uname", Int, buf=OutStruct("utsname")),
    sc("sysinfo", Int, Traits(clock_result=True), info=OutStruct("sysinfo")),
    sc("getrusage", Int, Traits(clock_result=True), who=Int, usage=OutStruct("rusage")),
    sc("times", Long, Traits(clock_result=True), buf=OutStruct("tms")),
    sc("personality", Int, persona=Uint),
    sc("unshare", Int, flags=CLONE_FLAGS),
    sc("setns", Int, fd=Fd, nstype=CLONE_FLAGS),
    sc("pidfd_open", Fd, pid=Int, flags=Uint),
    sc("pidfd_getfd", Fd, pidfd=Fd, targetfd=Int, flags=Uint),
    sc("getcpu", Int, cpu=OutInt(), node=OutInt(), tcache=Ptr),
    sc("restart_syscall", Long),
    # --- signals ---
    sc("kill", Int, pid=Int, sig=Signal),
    sc("tgkill", Int, tgid=Int, tid=Int, sig=Signal),
    sc("tkill", Int, tid=Int, sig=Signal),
    sc("rt_sigaction", Int, signum=Signal, act=InStruct("sigaction"), oldact=OutStruct("sigaction"),
       sigsetsize=Ulong(False)),
    sc("rt_sigprocmask", Int, how=SIGHOW, set_=SigSetIn(3), oldset=SigSetOut(3), sigsetsize=Ulong(False)),
    sc("rt_sigreturn", Long),
    sc("rt_sigsuspend", Int, Traits(blocks=True, waits_for_signal=True), mask=SigSetIn(1), sigsetsize=Ulong(False)),
    sc("rt_sigpending", Int, set_=SigSetOut(1), sigsetsize=Ulong(False)),
    sc("rt_sigtimedwait", Int, Traits(blocks=True, takes_signals="set"), set_=SigSetIn(3), info=Ptr, timeout=InStruct("timespec"),
       sigsetsize=Ulong(False)),
    sc("sigaltstack", Int, ss=Ptr, old_ss=Ptr),
    sc("signal", Ptr, signum=Signal, handler=Ptr),
    sc("pause", Int, Traits(blocks=True, waits_for_signal=True)),
    sc("alarm", Uint, Traits(clock_result=True), seconds=Uint),
    sc("signalfd4", Fd, Traits(world_fd=("signalfd",)), fd=Fd, mask=SigSetIn(2), sizemask=Ulong(False), flags=CLOEXEC_NONBLOCK),
    # --- time ---
    sc("clock_gettime", Int, Traits(clock_read=True), clockid=CLOCKS, tp=OutStruct("timespec")),
    sc("clock_getres", Int, clockid=CLOCKS, res=OutStruct("timespec")),
    sc("clock_settime", Int, clockid=CLOCKS, tp=InStruct("timespec")),
    sc("clock_nanosleep", Int, Traits(blocks=True), clockid=CLOCKS, flags=Flags(("TIMER_ABSTIME",)), request=InStruct("timespec"),
       remain=OutStruct("timespec")),
    sc("gettimeofday", Int, Traits(clock_read=True, clock="CLOCK_REALTIME"), tv=OutStruct("timeval"), tz=Ptr),
    sc("settimeofday", Int, tv=InStruct("timeval"), tz=Ptr),
    sc("time", Long, Traits(clock_read=True, clock="CLOCK_REALTIME_COARSE"), tloc=Ptr),
    sc("timerfd_create", Fd, clockid=CLOCKS, flags=CLOEXEC_NONBLOCK),
    sc("timerfd_settime", Int, Traits(clock_result=True), fd=Fd, flags=Flags(("TFD_TIMER_ABSTIME", "TFD_TIMER_CANCEL_ON_SET")),
       new_value=InStruct("itimerspec"), old_value=OutStruct("itimerspec")),
    sc("timerfd_gettime", Int, Traits(clock_result=True), fd=Fd, curr_value=OutStruct("itimerspec")),
    sc("timer_gettime", Int, Traits(clock_result=True), timerid=Int, curr_value=OutStruct("itimerspec")),
    sc("getitimer", Int, Traits(clock_result=True), which=Enum(("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF")),
       curr_value=OutStruct("itimerval")),
    sc("timer_settime", Int, Traits(clock_result=True), timerid=Int, flags=Flags(("TIMER_ABSTIME",)),
       new_value=InStruct("itimerspec"), old_value=OutStruct("itimerspec")),
    sc("setitimer", Int, Traits(clock_result=True), which=Enum(("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF")), new_value=InStruct("itimerval"), old_value=OutStruct("itimerval")),
    # --- fds of events ---
    sc("epoll_create1", Fd, flags=Flags(("EPOLL_CLOEXEC",))),
    sc("epoll_ctl", Int, Traits(fd_table_only=True, ret_not_compared=True, fields_not_compared=(("event", ("data",)),), shadow="epoll_ctl"), epfd=Fd, op=Enum(("EPOLL_CTL_ADD", "EPOLL_CTL_DEL", "EPOLL_CTL_MOD")), fd=Fd,
       event=InStruct("epoll_event")),
    sc("epoll_pwait", Int, Traits(blocks=True, perform="epoll_pwait", trace_when_set=("sigmask",)), epfd=Fd, events=StructArray("epoll_event", 2, "out", count_from_ret=True),
       maxevents=Int, timeout=Int, sigmask=SigSetIn(5), sigsetsize=Ulong(False)),
    sc("epoll_pwait2", Int, Traits(blocks=True), epfd=Fd, events=StructArray("epoll_event", 2, "out", count_from_ret=True),
       maxevents=Int, timeout=InStruct("timespec64"), sigmask=SigSetIn(5), sigsetsize=Ulong(False)),
    sc("ppoll", Int, Traits(blocks=True, clock_result=True), fds=StructArray("pollfd", 1, "inout"), nfds=Uint, tsp=InOutStruct("timespec"),
       sigmask=SigSetIn(4), sigsetsize=Ulong(False)),
    sc("pselect6", Int, Traits(blocks=True, clock_result=True), nfds=Int, readfds=FdSet(0), writefds=FdSet(0), exceptfds=FdSet(0),
       timeout=InOutStruct("timespec"), sigmask=Ptr),
    sc("eventfd2", Fd, Traits(world_fd=("other",)), initval=Uint, flags=Flags(("EFD_CLOEXEC", "EFD_NONBLOCK", "EFD_SEMAPHORE"))),
    sc("inotify_init1", Fd, flags=CLOEXEC_NONBLOCK),
    sc("inotify_rm_watch", Int, fd=Fd, wd=Int),
    # --- sockets ---
    sc("socket", Fd, domain=AF, type_=SOCK_TYPE, protocol=Int),
    sc("socketpair", Int, Traits(shadow="pair", world_fd=("socket",)), domain=AF, type_=SOCK_TYPE, protocol=Int, sv=OutInts(2)),
    sc("bind", Int, sockfd=Fd, addr=SockAddrIn(2), addrlen=Uint),
    sc("connect", Int, Traits(blocks=True), sockfd=Fd, addr=SockAddrIn(2), addrlen=Uint),
    sc("listen", Int, sockfd=Fd, backlog=Int),
    sc("accept4", Fd, Traits(blocks=True, perform="accept4"), sockfd=Fd, addr=SockAddrOut(2), addrlen=InOutInt(), flags=SOCK_FLAGS),
    sc("getsockname", Int, sockfd=Fd, addr=SockAddrOut(2), addrlen=InOutInt()),
    sc("getpeername", Int, sockfd=Fd, addr=SockAddrOut(2), addrlen=InOutInt()),
    sc("getsockopt", Int, sockfd=Fd, level=LEVELS, optname=SOCKOPT_NAME,
       optval=OutBuf(len_from_ret=False, len_ptr_arg=4), optlen=InOutInt()),
    sc("setsockopt", Int, Traits(ret_not_compared=True), sockfd=Fd, level=LEVELS, optname=SOCKOPT_NAME, optval=InBuf(4), optlen=Uint),
    sc("sendto", Long, Traits(blocks=True, perform="sendto", sends="buf"), sockfd=Fd, buf=InBuf(2), len_=Ulong, flags=MSG_FLAGS, dest_addr=SockAddrIn(5),
       addrlen=Uint),
    sc("recvfrom", Long, Traits(blocks=True, perform="recvfrom"), sockfd=Fd, buf=OutBuf(2), len_=Ulong, flags=MSG_FLAGS, src_addr=SockAddrOut(5),
       addrlen=InOutInt()),
    sc("sendmsg", Long, Traits(blocks=True, sends_fds=True), sockfd=Fd, msg=MsgHdrIn, flags=MSG_FLAGS),
    sc("recvmsg", Long, Traits(blocks=True, receives_fds=True), sockfd=Fd, msg=MsgHdrOut, flags=MSG_FLAGS),
    sc("sendmmsg", Int, sockfd=Fd, msgvec=Ptr, vlen=Uint, flags=MSG_FLAGS),
    sc("recvmmsg", Int, sockfd=Fd, msgvec=Ptr, vlen=Uint, flags=MSG_FLAGS, timeout=InStruct("timespec")),
    sc("shutdown", Int, Traits(shuts_down=True, perform="shutdown"), sockfd=Fd, how=Enum(("SHUT_RD", "SHUT_WR", "SHUT_RDWR"))),
    # --- demultiplexers kept when their sub-call is unknown ---
    sc("socketcall", Int, call=Int, args=Ptr),
    sc("ipc", Int, call=Uint, first=Int, second=Int, third=Int, ptr=Ptr, fifth=Long),
    # --- System V IPC (i386 `ipc` demultiplexes into these) ---
    sc("semop", Int, semid=Int, sops=Ptr, nsops=Uint),
    sc("semtimedop", Int, semid=Int, sops=Ptr, nsops=Uint, timeout=InStruct("timespec")),
    sc("semget", Int, key=Int, nsems=Int, semflg=Int),
    sc("semctl", Int, semid=Int, semnum=Int, cmd=IPC_CMD, arg=Ulong),
    sc("msgsnd", Int, msqid=Int, msgp=Ptr, msgsz=Ulong, msgflg=Int),
    sc("msgrcv", Long, msqid=Int, msgp=Ptr, msgsz=Ulong, msgtyp=Long, msgflg=Int),
    sc("msgget", Int, key=Int, msgflg=Int),
    sc("msgctl", Int, msqid=Int, cmd=IPC_CMD, buf=Ptr),
    sc("shmat", Ptr, shmid=Int, shmaddr=Ptr, shmflg=Int),
    sc("shmdt", Int, shmaddr=Ptr),
    sc("shmget", Int, key=Int, size=Ulong, shmflg=Int),
    sc("shmctl", Int, shmid=Int, cmd=IPC_CMD, buf=Ptr),
]
SPECS: dict[str, Spec] = {s.name: s for s in _SPEC_LIST}


# --------------------------------------------------------------------------------------------------
# Aliases
# --------------------------------------------------------------------------------------------------


class Lit(NamedTuple):
    value: Any


class Pair(NamedTuple):
    lo: int
    hi: int


class Mul(NamedTuple):
    arg: int
    factor: int


class MsToTime(NamedTuple):
    arg: int


@dataclass(frozen=True)
class Alias:
    """raw name -> canonical `target`; `args` builds each canonical argument (see module doc)."""

    target: str
    args: tuple | None = None  # None: identity (raw arg i -> canonical arg i)
    layouts: tuple[tuple[str, str], ...] = ()
    kinds: tuple[tuple[int, Kind], ...] = ()
    ret_from_arg: tuple[int, str] | None = None  # (canonical-call raw arg index, int size)
    note: str = ""


_T64 = (("timespec", "timespec64"), ("itimerspec", "itimerspec64"))
_STAT64 = (("stat", "stat64"),)
_OLDSIG = ((1, SigSetIn(size=4)), (2, SigSetOut(size=4)))

ALIASES: dict[str, Alias] = {
    # fds and paths: the *at / *2 / *3 / *4 form is canonical
    "open": Alias("openat", ("AT_FDCWD", 0, 1, 2)),
    "creat": Alias("openat", ("AT_FDCWD", 0, "O_CREAT|O_WRONLY|O_TRUNC", 1)),
    "stat": Alias("fstatat", ("AT_FDCWD", 0, 1, Lit(0))),
    "lstat": Alias("fstatat", ("AT_FDCWD", 0, 1, "AT_SYMLINK_NOFOLLOW")),
    "fstat": Alias("fstatat", (0, Lit(b""), 1, "AT_EMPTY_PATH")),
    "newfstatat": Alias("fstatat"),
    "stat64": Alias("fstatat", ("AT_FDCWD", 0, 1, Lit(0)), layouts=_STAT64),
    "lstat64": Alias("fstatat", ("AT_FDCWD", 0, 1, "AT_SYMLINK_NOFOLLOW"), layouts=_STAT64),
    "fstat64": Alias("fstatat", (0, Lit(b""), 1, "AT_EMPTY_PATH"), layouts=_STAT64),
    "fstatat64": Alias("fstatat", layouts=_STAT64),
    "oldstat": Alias("fstatat", ("AT_FDCWD", 0, 1, Lit(0)), layouts=(("stat", "__old_kernel_stat"),)),
    "oldlstat": Alias("fstatat", ("AT_FDCWD", 0, 1, "AT_SYMLINK_NOFOLLOW"),
                      layouts=(("stat", "__old_kernel_stat"),)),
    "oldfstat": Alias("fstatat", (0, Lit(b""), 1, "AT_EMPTY_PATH"), layouts=(("stat", "__old_kernel_stat"),)),
    "access": Alias("faccessat", ("AT_FDCWD", 0, 1, Lit(0))),
    "faccessat": Alias("faccessat", (0, 1, 2, Lit(0)), note="faccessat(d, p, m) == faccessat2(d, p, m, 0)"),
    "faccessat2": Alias("faccessat"),
    "mkdir": Alias("mkdirat", ("AT_FDCWD", 0, 1)),
    "mknod": Alias("mknodat", ("AT_FDCWD", 0, 1, 2)),
    "unlink": Alias("unlinkat", ("AT_FDCWD", 0, Lit(0))),
    "rmdir": Alias("unlinkat", ("AT_FDCWD", 0, "AT_REMOVEDIR")),
    "rename": Alias("renameat2", ("AT_FDCWD", 0, "AT_FDCWD", 1, Lit(0))),
    "renameat": Alias("renameat2", (0, 1, 2, 3, Lit(0))),
    "readlink": Alias("readlinkat", ("AT_FDCWD", 0, 1, 2)),
    "link": Alias("linkat", ("AT_FDCWD", 0, "AT_FDCWD", 1, Lit(0))),
    "symlink": Alias("symlinkat", (0, "AT_FDCWD", 1)),
    "chmod": Alias("fchmodat", ("AT_FDCWD", 0, 1)),
    "chown": Alias("fchownat", ("AT_FDCWD", 0, 1, 2, Lit(0))),
    "lchown": Alias("fchownat", ("AT_FDCWD", 0, 1, 2, "AT_SYMLINK_NOFOLLOW")),
    "chown32": Alias("fchownat", ("AT_FDCWD", 0, 1, 2, Lit(0))),
    "lchown32": Alias("fchownat", ("AT_FDCWD", 0, 1, 2, "AT_SYMLINK_NOFOLLOW")),
    "fchown32": Alias("fchown"),
    "utimes": Alias("futimesat", ("AT_FDCWD", 0, 1)),
    "umount": Alias("umount2", (0, Lit(0))),
    "getdents": Alias("getdents64", layouts=(("linux_dirent64", "linux_dirent"),),
                      note="struct linux_dirent: d_type is the record's last byte; ret counts "
                           "its own (shorter/longer) records, so ret may differ from getdents64's"),
    "dup2": Alias("dup3", (0, 1, Lit(0)),
                  note="dup2(a, a) returns a (EBADF if a is closed) where dup3(a, a, 0) fails EINVAL"),
    "pipe": Alias("pipe2", (0, Lit(0))),
    "fcntl64": Alias("fcntl"),
    "_llseek": Alias("lseek", (0, Pair(2, 1), 4), ret_from_arg=(3, "s64"),
                     note="_llseek(fd, hi, lo, &result, whence) returns 0 and writes the offset to "
                          "*result; decode_outputs() reads it and makes it the canonical ret"),
    "llseek": Alias("lseek", (0, Pair(2, 1), 4), ret_from_arg=(3, "s64")),
    "sendfile64": Alias("sendfile", layouts=(), kinds=((2, InOutInt("s64")),)),
    "truncate64": Alias("truncate"),
    "ftruncate64": Alias("ftruncate"),
    "statfs64": Alias("statfs", (0, 2), layouts=(("statfs", "statfs64"),)),
    "fstatfs64": Alias("fstatfs", (0, 2), layouts=(("statfs", "statfs64"),)),
    "fadvise64_64": Alias("fadvise64"),
    "arm_fadvise64_64": Alias("fadvise64", (0, 2, 3, 1)),
    "preadv": Alias("preadv2", (0, 1, 2, 3, Lit(0)), note="pos_h ignored on 64-bit"),
    "pwritev": Alias("pwritev2", (0, 1, 2, 3, Lit(0))),
    "preadv2": Alias("preadv2", (0, 1, 2, 3, 5)),
    "pwritev2": Alias("pwritev2", (0, 1, 2, 3, 5)),
    "eventfd": Alias("eventfd2", (0, Lit(0))),
    "inotify_init": Alias("inotify_init1", (Lit(0),)),
    "epoll_create": Alias("epoll_create1", (Lit(0),),
                          note="the size hint is dropped (epoll_create(size<=0) fails EINVAL)"),
    "signalfd": Alias("signalfd4", (0, 1, 2, Lit(0))),
    "pipe2": Alias("pipe2"),
    # memory
    "mmap2": Alias("mmap", (0, 1, 2, 3, 4, Mul(5, 4096)), note="offset in 4096-byte pages"),
    # polling
    "epoll_wait": Alias("epoll_pwait", (0, 1, 2, 3, Lit(0), Lit(8))),
    "poll": Alias("ppoll", (0, 1, MsToTime(2), Lit(0), Lit(8)),
                  note="the int ms timeout becomes a time value (None when negative)"),
    "select": Alias("pselect6", (0, 1, 2, 3, 4, Lit(0)), layouts=(("timespec", "timeval"),)),
    "_newselect": Alias("pselect6", (0, 1, 2, 3, 4, Lit(0)), layouts=(("timespec", "timeval"),)),
    # sockets
    "accept": Alias("accept4", (0, 1, 2, Lit(0))),
    "send": Alias("sendto", (0, 1, 2, 3, Lit(0), Lit(0))),
    "recv": Alias("recvfrom", (0, 1, 2, 3, Lit(0), Lit(0))),
    # processes
    "fork": Alias("clone", ("SIGCHLD", Lit(0), Lit(0), Lit(0), Lit(0))),
    "vfork": Alias("clone", ("CLONE_VM|CLONE_VFORK|SIGCHLD", Lit(0), Lit(0), Lit(0), Lit(0))),
    "waitpid": Alias("wait4", (0, 1, 2, Lit(0))),
    "getpgrp": Alias("getpgid", (Lit(0),)),
    "nanosleep": Alias("clock_nanosleep", ("CLOCK_REALTIME", Lit(0), 0, 1)),
    # rlimits
    "getrlimit": Alias("prlimit64", (Lit(0), 0, Lit(0), 1), layouts=(("rlimit64", "rlimit"),)),
    "ugetrlimit": Alias("prlimit64", (Lit(0), 0, Lit(0), 1), layouts=(("rlimit64", "rlimit"),)),
    "setrlimit": Alias("prlimit64", (Lit(0), 0, 1, Lit(0)), layouts=(("rlimit64", "rlimit"),)),
    # signals: old (non-rt) forms of i386
    "sigaction": Alias("rt_sigaction", (0, 1, 2, Lit(8)), layouts=(("sigaction", "old_sigaction"),)),
    "sigprocmask": Alias("rt_sigprocmask", (0, 1, 2, Lit(8)), kinds=_OLDSIG),
    "sigpending": Alias("rt_sigpending", (0, Lit(8)), kinds=((0, SigSetOut(size=4)),)),
    "sigreturn": Alias("rt_sigreturn", note="return from a handler, with or without SA_SIGINFO"),
    # i386 16-bit uid calls have 32-bit twins
    **{f"{n}32": Alias(n) for n in ("getuid", "geteuid", "getgid", "getegid", "setuid", "setgid",
                                     "setreuid", "setregid", "setresuid", "setresgid", "getresuid",
                                     "getresgid", "getgroups", "setgroups", "setfsuid", "setfsgid")},
}
# *_time64 (i386): the plain call with 64-bit time structs
_TIME64 = ("clock_gettime64", "clock_settime64", "clock_adjtime64", "clock_getres_time64",
           "clock_nanosleep_time64", "timer_gettime64", "timer_settime64", "timerfd_gettime64",
           "timerfd_settime64", "utimensat_time64", "pselect6_time64", "ppoll_time64",
           "io_pgetevents_time64", "recvmmsg_time64", "mq_timedsend_time64", "mq_timedreceive_time64",
           "semtimedop_time64", "rt_sigtimedwait_time64", "futex_time64", "sched_rr_get_interval_time64")
for _n in _TIME64:
    _base = _n.removesuffix("_time64").removesuffix("64") if _n.endswith("_time64") else _n[:-2]
    ALIASES[_n] = Alias(_base, layouts=_T64)

_U16 = Uid(16)
ARCH_ALIASES: dict[str, dict[str, Alias]] = {
    "i386": {
        # 64-bit values in two registers (low word first)
        "pread64": Alias("pread64", (0, 1, 2, Pair(3, 4))),
        "pwrite64": Alias("pwrite64", (0, 1, 2, Pair(3, 4))),
        "preadv": Alias("preadv2", (0, 1, 2, Pair(3, 4), Lit(0))),
        "pwritev": Alias("pwritev2", (0, 1, 2, Pair(3, 4), Lit(0))),
        "preadv2": Alias("preadv2", (0, 1, 2, Pair(3, 4), 5)),
        "pwritev2": Alias("pwritev2", (0, 1, 2, Pair(3, 4), 5)),
        # 32-bit off_t in one register
        "lseek": Alias("lseek", kinds=((1, Long()),)),
        "truncate": Alias("truncate", kinds=((1, Long()),)),
        "ftruncate": Alias("ftruncate", kinds=((1, Long()),)),
        "truncate64": Alias("truncate", (0, Pair(1, 2))),
        "ftruncate64": Alias("ftruncate", (0, Pair(1, 2))),
        "fadvise64": Alias("fadvise64", (0, Pair(1, 2), 3, 4)),
        "fadvise64_64": Alias("fadvise64", (0, Pair(1, 2), Pair(3, 4), 5)),
        "fallocate": Alias("fallocate", (0, 1, Pair(2, 3), Pair(4, 5))),
        "readahead": Alias("readahead", (0, Pair(1, 2), 3)),
        "sendfile": Alias("sendfile"),
        "sendfile64": Alias("sendfile", kinds=((2, InOutInt("s64")),)),
        # 32-bit old stat (struct stat of the i386 kernel) vs stat64
        "stat": Alias("fstatat", ("AT_FDCWD", 0, 1, Lit(0))),
        "lstat": Alias("fstatat", ("AT_FDCWD", 0, 1, "AT_SYMLINK_NOFOLLOW")),
        "fstat": Alias("fstatat", (0, Lit(b""), 1, "AT_EMPTY_PATH")),
        # CLONE_BACKWARDS: (flags, stack, parent_tid, tls, child_tid)
        "clone": Alias("clone", (0, 1, 2, 4, 3)),
        # 16-bit uid/gid variants
        "chown": Alias("fchownat", ("AT_FDCWD", 0, 1, 2, Lit(0)), kinds=((2, _U16), (3, _U16))),
        "lchown": Alias("fchownat", ("AT_FDCWD", 0, 1, 2, "AT_SYMLINK_NOFOLLOW"), kinds=((2, _U16), (3, _U16))),
        "fchown": Alias("fchown", kinds=((1, _U16), (2, _U16))),
        "setuid": Alias("setuid", kinds=((0, _U16),)),
        "setgid": Alias("setgid", kinds=((0, _U16),)),
        "setreuid": Alias("setreuid", kinds=((0, _U16), (1, _U16))),
        "setregid": Alias("setregid", kinds=((0, _U16), (1, _U16))),
        "setresuid": Alias("setresuid", kinds=((0, _U16), (1, _U16), (2, _U16))),
        "setresgid": Alias("setresgid", kinds=((0, _U16), (1, _U16), (2, _U16))),
        "setfsuid": Alias("setfsuid", kinds=((0, _U16),)),
        "setfsgid": Alias("setfsgid", kinds=((0, _U16),)),
        "getrlimit": Alias("prlimit64", (Lit(0), 0, Lit(0), 1), layouts=(("rlimit64", "rlimit"),),
                           note="old getrlimit: RLIM_INFINITY clipped to 0x7fffffff by the kernel"),
    },
    "aarch64": {
        # CLONE_BACKWARDS: (flags, stack, parent_tid, tls, child_tid)
        "clone": Alias("clone", (0, 1, 2, 4, 3)),
    },
}


# --------------------------------------------------------------------------------------------------
# Multiplexed syscalls
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemDemux:
    """The sub-call's arguments are words in tracee memory at raw argument `ptr_arg`.
    `table` maps the selector (raw argument `selector_arg`, or None when there is a single
    sub-call) to (raw sub-call name, number of argument words)."""

    selector_arg: int | None
    ptr_arg: int
    table: dict[int | None, tuple[str, int]]
    note: str = ""


@dataclass(frozen=True)
class RegDemux:
    """The sub-call is chosen by `raw arg selector_arg & mask` (the rest is a version); its
    arguments are raw registers, listed as alias-style sources per sub-call."""

    selector_arg: int
    mask: int
    table: dict[int, tuple[str, tuple]]
    note: str = ""


SOCKETCALL_SUBCALLS: dict[int, tuple[str, int]] = {
    1: ("socket", 3), 2: ("bind", 3), 3: ("connect", 3), 4: ("listen", 2), 5: ("accept", 3),
    6: ("getsockname", 3), 7: ("getpeername", 3), 8: ("socketpair", 4), 9: ("send", 4),
    10: ("recv", 4), 11: ("sendto", 6), 12: ("recvfrom", 6), 13: ("shutdown", 2),
    14: ("setsockopt", 5), 15: ("getsockopt", 5), 16: ("sendmsg", 3), 17: ("recvmsg", 3),
    18: ("accept4", 4), 19: ("recvmmsg", 5), 20: ("sendmmsg", 4),
}
# ipc(call, first, second, third, ptr, fifth): sources index the ipc registers (1=first ... 5=fifth)
IPC_SUBCALLS: dict[int, tuple[str, tuple]] = {
    1: ("semop", (1, 4, 2)), 2: ("semget", (1, 2, 3)), 3: ("semctl", (1, 2, 3, 4)),
    4: ("semtimedop", (1, 4, 2, 5)), 11: ("msgsnd", (1, 4, 2, 3)),
    12: ("msgrcv", (1, 4, 2, 5, 3)),  # version 1 form; version 0 passes {msgp, msgtyp} at ptr
    13: ("msgget", (1, 2)), 14: ("msgctl", (1, 2, 4)), 21: ("shmat", (1, 4, 2)), 22: ("shmdt", (4,)),
    23: ("shmget", (1, 2, 3)), 24: ("shmctl", (1, 2, 4)),
}

DEMUX: dict[str, dict[str, MemDemux | RegDemux]] = {
    "i386": {
        "socketcall": MemDemux(0, 1, SOCKETCALL_SUBCALLS,
                               "socketcall(call, args): args points to the sub-call's 32-bit arguments"),
        "ipc": RegDemux(0, 0xFFFF, IPC_SUBCALLS,
                        "ipc(call, first, second, third, ptr, fifth): sub-call arguments are in registers; "
                        "the version (call >> 16) is ignored, msgrcv version 0 is approximate"),
        "mmap": MemDemux(None, 0, {None: ("old_mmap", 6)},
                         "old mmap(args): args points to {addr, len, prot, flags, fd, offset (bytes)}"),
        "select": MemDemux(None, 0, {None: ("_newselect", 5)},
                           "old select(args): args points to {n, inp, outp, exp, tvp}"),
    },
}
ALIASES["old_mmap"] = Alias("mmap")  # the sub-call of i386's old mmap: offset already in bytes

# --------------------------------------------------------------------------------------------------
# Lookups
# --------------------------------------------------------------------------------------------------


class UnknownCanonical(MvxError):
    """A canonical syscall name nobody declared."""






def const(arch, name: str) -> int:
    """A constant of `arch` ("A|B" ORs several); the arch's neutral_consts fill gaps of its consts."""
    a = _arch(arch)
    value = 0
    for part in name.split("|"):
        part = part.strip()
        v = a.consts.get(part)
        if v is None:
            v = a.neutral_consts.get(part)
        if v is None:
            from mvx.isa.arch import UnknownConst

            raise UnknownConst(f"{a.name} has no constant {part!r}")
        value |= v
    return value


def const_or_none(arch, name: str) -> int | None:
    a = _arch(arch)
    v = a.consts.get(name)
    return a.neutral_consts.get(name) if v is None else v


def alias_for(arch, raw_name: str) -> Alias | None:
    a = _arch(arch)
    return ARCH_ALIASES.get(a.name, {}).get(raw_name) or ALIASES.get(raw_name)


def demux_for(arch, raw_name: str) -> MemDemux | RegDemux | None:
    return DEMUX.get(_arch(arch).name, {}).get(raw_name)


def canonical_of(arch, raw_name: str) -> str:
    """Canonical name of a (non-multiplexed) raw syscall name."""
    al = alias_for(arch, raw_name)
    return al.target if al else raw_name


def alias_kinds(spec: Spec, alias: Alias | None) -> list[Kind]:
    """The argument kinds of `spec` as a raw alias supplies them (other struct layouts, replaced kinds)."""
    kinds = list(spec.kinds)
    if alias and alias.layouts:
        kinds = [k.with_layouts(dict(alias.layouts)) for k in kinds]
    if alias:
        for i, k in alias.kinds:
            kinds[i] = k
    return kinds


def spec_of(canonical: str) -> Spec:
    return SPECS.get(canonical) or generic_spec(canonical)


@functools.cache
def canonical_names() -> tuple[str, ...]:
    """Every canonical name: declared specs plus raw names of any arch without alias."""
    from mvx.isa import arch as archmod

    names = set(SPECS)
    for a in archmod.ARCHES:
        for raw in _arch(a).names.values():
            if demux_for(a, raw):
                continue
            names.add(canonical_of(a, raw))
    return tuple(sorted(names))


class RawSelector(NamedTuple):
    """A raw syscall number, optionally only when its first argument equals `arg0_equals`."""

    nr: int
    arg0_equals: int | None = None


def raw_arg_of(arch, sel: RawSelector, canonical_name: str, arg: str) -> int | Lit | None:
    """Where the raw call `sel` of `arch` takes `canonical_name`'s argument `arg` from: the index of
    its raw argument (a register: a seccomp filter can test it), a Lit (the raw form has no such
    argument: it is always that value, as epoll_wait's NULL signal mask), or None (a multiplexer's
    sub-call, whose arguments are in memory; a named constant, a pair, a conversion)."""
    if sel.arg0_equals is not None:
        return None
    a = _arch(arch)
    idx = spec_of(canonical_name).arg_names.index(arg)
    al = alias_for(a, a.name_of(sel.nr))
    if al is None or al.args is None:
        return idx
    src = al.args[idx] if idx < len(al.args) else None
    return src if isinstance(src, Lit) or (isinstance(src, int) and not isinstance(src, bool)) else None


def raw_selectors(arch, canonical_name: str) -> list[RawSelector]:
    """The raw syscalls of `arch` that normalize to `canonical_name` (for seccomp filters).
    For multiplexers the selector value is matched on the first argument (exact value; for ipc
    that is version 0 of the sub-call)."""
    a = _arch(arch)
    out: list[RawSelector] = []
    for nr, raw in sorted(a.names.items()):
        dm = demux_for(a, raw)
        if dm is None:
            if canonical_of(a, raw) == canonical_name:
                out.append(RawSelector(nr))
            continue
        for sel, entry in dm.table.items():
            if canonical_of(a, entry[0]) == canonical_name:
                out.append(RawSelector(nr, sel))
    return out
