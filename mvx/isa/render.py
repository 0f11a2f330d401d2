"""strace-like one-line rendering of a canonical Call.

    openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3
    read(3, "\\x7fELF\\x02\\x01\\x01\\x00"..., 832) = 832
    accept4(3, {sa_family=AF_INET, sin_port=htons(40000), sin_addr=inet_addr("127.0.0.1")}, [16],
            SOCK_CLOEXEC) = 4
    openat(AT_FDCWD, "/nope", O_RDONLY) = -1 ENOENT (No such file or directory)

Differences from strace, chosen for clarity: non-printable bytes are \\xHH (strace: octal); the
canonical name is shown (open -> openat, with AT_FDCWD); openat's mode is shown only with O_CREAT
or O_TMPFILE, as strace does; an output argument not decoded yet prints as its address; epoll
data prints as one hex number; a trailing sigsetsize is printed as a plain number.
"""

from __future__ import annotations

import errno as errno_mod
import os

from mvx.isa import syscalls as S
from mvx.isa.canonical import Call, IoVec, signal_number
from mvx.isa.structs import SockAddr, TimeValue
from mvx.isa.syscalls import UNKNOWN, Addr, FlagSet

__all__ = ["STRSIZE", "escape", "render", "render_value"]

STRSIZE = 32

_ESC = {0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x0B: "\\v", 0x0C: "\\f", 0x22: '\\"', 0x5C: "\\\\"}


def escape(data: bytes, limit: int | None = STRSIZE) -> str:
    """A quoted C-like string; `...` after the quote when longer than `limit` bytes."""
    cut = data if limit is None else data[:limit]
    out = []
    for b in cut:
        if b in _ESC:
            out.append(_ESC[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    more = "..." if limit is not None and len(data) > limit else ""
    return f'"{"".join(out)}"{more}'


def _flag_order(arch, fs: FlagSet, kind: S.Flags | None) -> list[str]:
    from mvx.isa import arch as archmod

    a = archmod.get(arch)
    field_names = {n for _, ns in (kind.fields if kind else ()) for n in ns}

    def key(n: str):
        if n in field_names:
            return (0, 0, n)
        if n.startswith("SIG") and not n.startswith("SIG_"):
            return (2, signal_number(a, n), n)
        v = S.const_or_none(a, n)
        return (1, v if v is not None else 0, n)

    return sorted(fs.names, key=key)


def _flags(arch, fs: FlagSet, kind=None) -> str:
    parts = _flag_order(arch, fs, kind)
    if fs.rest:
        parts.append(hex(fs.rest))
    return "|".join(parts) or "0"


def _mode(m: int) -> str:
    return f"0{m:o}" if m else "000"


def _stat_mode(m: int) -> str:
    kinds = {0o140000: "S_IFSOCK", 0o120000: "S_IFLNK", 0o100000: "S_IFREG", 0o60000: "S_IFBLK",
             0o40000: "S_IFDIR", 0o20000: "S_IFCHR", 0o10000: "S_IFIFO"}
    t = kinds.get(m & 0o170000)
    perm = m & 0o7777
    return f"{t}|{perm:04o}" if t else _mode(m)


def _sockaddr(sa: SockAddr) -> str:
    f = dict(sa.fields)
    fam = sa.family
    if fam == "AF_INET":
        return (f"{{sa_family=AF_INET, sin_port=htons({f['sin_port']}), "
                f"sin_addr=inet_addr(\"{f['sin_addr']}\")}}")
    if fam == "AF_INET6":
        return (f"{{sa_family=AF_INET6, sin6_port=htons({f['sin6_port']}), sin6_flowinfo=htonl("
                f"{f['sin6_flowinfo']}), inet_pton(AF_INET6, \"{f['sin6_addr']}\"), "
                f"sin6_scope_id={f['sin6_scope_id']}}}")
    if fam == "AF_UNIX":
        p = f["sun_path"]
        if p[:1] == b"\0":
            return f"{{sa_family=AF_UNIX, sun_path=@{escape(p[1:], None)}}}"
        return f"{{sa_family=AF_UNIX, sun_path={escape(p, None)}}}"
    return f"{{sa_family={fam}, sa_data={escape(f.get('data', b''))}}}"


def render_value(arch, v, kind=None, strsize: int | None = STRSIZE) -> str:
    """One decoded value as strace would print it (roughly)."""
    if v is UNKNOWN:
        return "?"
    if v is None:
        return "NULL"
    if isinstance(v, Addr):
        return "NULL" if v.value == 0 else hex(v.value)
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, FlagSet):
        return _flags(arch, v, kind if isinstance(kind, S.Flags) else None)
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        if isinstance(kind, S.FileMode):
            return _mode(v)
        if isinstance(kind, (S.InOutInt, S.OutInt)):
            return f"[{v}]"
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        limit = None if isinstance(kind, (S.Path, S.StrArray)) else strsize
        return escape(bytes(v), limit)
    if isinstance(v, IoVec):
        items = [f"{{iov_base={escape(p, strsize)}, iov_len={len(p)}}}" for p in v.parts]
        return "[" + ", ".join(items) + "]"
    if isinstance(v, TimeValue):
        if v.usec:
            return f"{{tv_sec={v.sec}, tv_usec={v.nsec // 1000}}}"
        return f"{{tv_sec={v.sec}, tv_nsec={v.nsec}}}"
    if isinstance(v, SockAddr):
        return _sockaddr(v)
    if isinstance(v, frozenset):
        if isinstance(kind, S.FdSet):
            return "[" + " ".join(str(x) for x in sorted(v)) + "]"
        sigs = sorted(v, key=lambda s: (isinstance(s, str) and s.startswith("SIGRT_"), str(s)))
        return "[" + " ".join(str(s).removeprefix("SIG") for s in sigs) + "]"
    if isinstance(v, dict):
        if "st_mode" in v and "st_size" in v:
            return f"{{st_mode={_stat_mode(v['st_mode'])}, st_size={v['st_size']}, ...}}"
        if "d_name" in v:
            return f"{{d_ino={v['d_ino']}, d_type={v['d_type']}, d_name={escape(v['d_name'], None)}}}"
        inner = []
        for k, x in v.items():
            inner.append(f"{k}={render_value(arch, x, None, strsize)}")
        return "{" + ", ".join(inner) + "}"
    if isinstance(v, (tuple, list)):
        if isinstance(kind, S.OutInts):
            return "[" + ", ".join(str(x) for x in v) + "]"
        return "[" + ", ".join(render_value(arch, x, None, strsize) for x in v) + "]"
    return repr(v)


def _ret(call: Call, ret: int | None, errno_name: str | None) -> str:
    if ret is None:
        return "?"
    if -4096 < ret < 0 or errno_name:
        e = -ret if ret < 0 else 0
        name = errno_name or errno_mod.errorcode.get(e, f"E{e}")
        num = getattr(errno_mod, name, e) if errno_name else e
        return f"-1 {name} ({os.strerror(num)})"
    if isinstance(call.spec.ret, S.Ptr):
        return hex(ret)
    if isinstance(call.spec.ret, S.FileMode):
        return _mode(ret)
    return str(ret)


def render(call: Call, ret: int | None = None, errno_name: str | None = None, *,
           strsize: int | None = STRSIZE) -> str:
    """`name(args) = ret` for a canonical call; outputs decoded by decode_outputs are shown in
    place of their pointers. `ret` defaults to call.ret; `errno_name` forces the error text."""
    if ret is None:
        ret = call.ret
    parts = []
    kinds = call.kinds or call.spec.kinds
    for i, v in enumerate(call.args):
        kind = kinds[i] if i < len(kinds) else None
        if call.name == "openat" and i == 3 and isinstance(call.args[2], FlagSet) \
                and not call.args[2].names & {"O_CREAT", "O_TMPFILE"}:
            continue
        if i in call.outputs:
            out = call.outputs[i]
            if isinstance(kind, S.InOutInt) and isinstance(v, int) and out != v:
                parts.append(f"[{v} => {out}]")
                continue
            v = out
        parts.append(render_value(call.arch, v, kind, strsize))
    return f"{call.name}({', '.join(parts)}) = {_ret(call, ret, errno_name)}"
