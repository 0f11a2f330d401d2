"""Decode and encode per-ISA structs, table-driven from `arch.layouts`.

A struct decodes to a dict {field: value}: integer fields (1, 2, 4, 8 bytes) to ints (signed as the
layout says), nested structs (itimerspec's it_value, rusage's ru_utime, statx's stx_atime) to their
own decoded value, char arrays to bytes. Time structs (timespec, timespec64, timeval,
statx_timestamp) decode to a `TimeValue`, so a 32-bit timespec, a 64-bit one and a timeval holding
the same time compare equal. Every layout comes from the generated tables (mvx/isa/archdata).

All three ISAs are little-endian; network-order fields of sockaddrs are handled by
`decode_sockaddr` / `encode_sockaddr`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from mvx import MvxError
from mvx.isa.arch import get as _arch

__all__ = [
    "SockAddr",
    "StructError",
    "TimeValue",
    "decode",
    "decode_array",
    "decode_dirents",
    "decode_epoll_events",
    "decode_iovecs",
    "decode_sockaddr",
    "decode_stat",
    "decode_timespec",
    "encode",
    "encode_array",
    "encode_epoll_events",
    "encode_iovecs",
    "encode_sockaddr",
    "encode_timespec",
    "layout",
    "read_int",
]


class StructError(MvxError):
    """Bytes that do not hold the struct asked for (too short, unknown layout)."""


@dataclass(frozen=True)
class TimeValue:
    """A decoded time (timespec, timespec64, timeval...): seconds and nanoseconds.
    `usec` records that it came from a microsecond struct (only rendering uses it)."""

    sec: int
    nsec: int
    usec: bool = False

    def __eq__(self, other):
        if not isinstance(other, TimeValue):
            return NotImplemented
        return (self.sec, self.nsec) == (other.sec, other.nsec)

    def __hash__(self):
        return hash((self.sec, self.nsec))


@dataclass(frozen=True)
class SockAddr:
    """A decoded socket address: family name (or number) and family-specific fields."""

    family: str | int
    fields: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str, default=None):
        return dict(self.fields).get(name, default)


# Struct-valued fields: (layout, field) -> layout of the member (same arch).
NESTED = {
    ("itimerspec", "it_interval"): "timespec", ("itimerspec", "it_value"): "timespec",
    ("itimerspec64", "it_interval"): "timespec64", ("itimerspec64", "it_value"): "timespec64",
    ("itimerval", "it_interval"): "timeval", ("itimerval", "it_value"): "timeval",
    ("rusage", "ru_utime"): "timeval", ("rusage", "ru_stime"): "timeval",
    ("statx", "stx_atime"): "statx_timestamp", ("statx", "stx_btime"): "statx_timestamp",
    ("statx", "stx_ctime"): "statx_timestamp", ("statx", "stx_mtime"): "statx_timestamp",
    ("mmsghdr", "msg_hdr"): "msghdr",
}
CSTRING_LAYOUTS = frozenset({"utsname"})
# Array fields of integers of the ISA's width: (layout, field) -> element count; decoded to a tuple
# of (unsigned) ints, so a 64-bit ISA's values re-encode into a 32-bit one's narrower elements.
INT_ARRAYS = {("sysinfo", "loads"): 3}
TIME_LAYOUTS = {"timespec": "tv_nsec", "timespec64": "tv_nsec", "timeval": "tv_usec",
                "statx_timestamp": "tv_nsec"}
STAT_LAYOUTS = frozenset({"stat", "stat64", "__old_kernel_stat"})






def layout(arch, name: str):
    """The layout `name` of `arch` (64-bit ISAs have no flock64 of their own: flock is it)."""
    a = _arch(arch)
    lay = a.layouts.get(name)
    if lay is None and name == "flock64":
        lay = a.layouts.get("flock")
    if lay is None:
        raise StructError(f"{a.name} has no struct layout {name!r}")
    return lay


def has_layout(arch, name: str) -> bool:
    try:
        layout(arch, name)
        return True
    except StructError:
        return False


def read_int(data: bytes, offset: int, size: int, signed: bool) -> int:
    return int.from_bytes(data[offset:offset + size], "little", signed=signed)


def decode(arch, name: str, data: bytes):
    """Decode one struct `name` of `arch` from `data` (at least the layout's size)."""
    lay = layout(arch, name)
    if len(data) < lay.size:
        raise StructError(f"{name}: need {lay.size} bytes, got {len(data)}")
    out: dict[str, Any] = {}
    for fname, (off, size, signed) in lay.fields.items():
        if size == 0:
            continue
        nested = NESTED.get((name, fname))
        if nested and has_layout(arch, nested):
            out[fname] = decode(arch, nested, data[off:off + size])
        elif (name, fname) in INT_ARRAYS:
            n = INT_ARRAYS[(name, fname)]
            out[fname] = tuple(read_int(data, off + i * (size // n), size // n, False) for i in range(n))
        elif size in (1, 2, 4, 8):
            out[fname] = read_int(data, off, size, signed)
        elif name in CSTRING_LAYOUTS:
            out[fname] = data[off:off + size].split(b"\0", 1)[0]
        else:
            out[fname] = bytes(data[off:off + size])
    if name in TIME_LAYOUTS:
        sub = TIME_LAYOUTS[name]
        frac = out.get(sub, 0)
        if sub == "tv_usec":
            return TimeValue(out["tv_sec"], frac * 1000, usec=True)
        return TimeValue(out["tv_sec"], frac)
    if name in STAT_LAYOUTS:
        return _canonical_stat(out)
    return out


def _canonical_stat(raw: dict) -> dict:
    """stat / stat64 / old stat -> one ISA-neutral dict (pads dropped, times as TimeValue)."""
    out = {}
    for key in ("st_dev", "st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
                "st_blksize", "st_blocks"):
        if key in raw:
            out[key] = raw[key]
    for t in ("atime", "mtime", "ctime"):
        if f"st_{t}" in raw:
            out[f"st_{t}"] = TimeValue(raw[f"st_{t}"], raw.get(f"st_{t}_nsec", 0))
    return out


def encode(arch, name: str, values) -> bytes:
    """Encode `values` (a dict as decode() returns, or a TimeValue for time layouts) as struct
    `name` of `arch`. Missing fields are zero; ints are truncated to their field size."""
    lay = layout(arch, name)
    if isinstance(values, TimeValue):
        sub = TIME_LAYOUTS.get(name, "tv_nsec")
        values = {"tv_sec": values.sec, sub: values.nsec // 1000 if sub == "tv_usec" else values.nsec}
    if name in STAT_LAYOUTS:
        values = dict(values)
        for t in ("atime", "mtime", "ctime"):
            tv = values.get(f"st_{t}")
            if isinstance(tv, TimeValue):
                values[f"st_{t}"], values[f"st_{t}_nsec"] = tv.sec, tv.nsec
    buf = bytearray(lay.size)
    for fname, (off, size, _signed) in lay.fields.items():
        if size == 0 or fname not in values:
            continue
        v = values[fname]
        nested = NESTED.get((name, fname))
        if nested and not isinstance(v, (int, bytes)):
            buf[off:off + size] = encode(arch, nested, v)[:size]
        elif isinstance(v, (tuple, list)) and (name, fname) in INT_ARRAYS:
            w = size // INT_ARRAYS[(name, fname)]
            buf[off:off + size] = b"".join((int(x) & ((1 << 8 * w) - 1)).to_bytes(w, "little") for x in v)[:size]
        elif isinstance(v, (bytes, bytearray)):
            buf[off:off + min(size, len(v))] = v[:size]
        else:
            buf[off:off + size] = (int(v) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    return bytes(buf)


def decode_array(arch, name: str, data: bytes, count: int) -> list:
    size = layout(arch, name).size
    if len(data) < size * count:
        raise StructError(f"{name}[{count}]: need {size * count} bytes, got {len(data)}")
    return [decode(arch, name, data[i * size:(i + 1) * size]) for i in range(count)]


def encode_array(arch, name: str, items) -> bytes:
    return b"".join(encode(arch, name, v) for v in items)


# --- named helpers ---------------------------------------------------------------------------------


def decode_epoll_events(arch, data: bytes, count: int) -> list[tuple[int, int]]:
    """epoll_event[count] (12-byte packed on x86, 16 bytes on aarch64) -> [(events, data)]."""
    return [(e["events"], e["data"]) for e in decode_array(arch, "epoll_event", data, count)]


def encode_epoll_events(arch, events) -> bytes:
    """[(events, data)] -> the arch's epoll_event array bytes."""
    return encode_array(arch, "epoll_event", [{"events": ev, "data": d} for ev, d in events])


def decode_iovecs(arch, data: bytes, count: int) -> list[tuple[int, int]]:
    return [(v["iov_base"], v["iov_len"]) for v in decode_array(arch, "iovec", data, count)]


def encode_iovecs(arch, iovs) -> bytes:
    return encode_array(arch, "iovec", [{"iov_base": b, "iov_len": n} for b, n in iovs])


def decode_timespec(arch, data: bytes, name: str = "timespec") -> TimeValue:
    return decode(arch, name, data)


def encode_timespec(arch, tv: TimeValue, name: str = "timespec") -> bytes:
    return encode(arch, name, tv)


def decode_stat(arch, data: bytes, name: str = "stat") -> dict:
    return decode(arch, name, data)


def _family_name(arch, fam: int) -> str | int:
    a = _arch(arch)
    for n in ("AF_UNSPEC", "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"):
        if a.consts.get(n) == fam:
            return n
    for n, v in sorted(a.consts.items()):
        if n.startswith("AF_") and v == fam:
            return n
    return fam


def decode_sockaddr(arch, data: bytes) -> SockAddr:
    """A sockaddr by family: AF_INET {sin_port, sin_addr}, AF_INET6 {sin6_port, sin6_flowinfo,
    sin6_addr, sin6_scope_id}, AF_UNIX {sun_path} (abstract names keep their leading NUL); other
    families keep their bytes as `data`."""
    if len(data) < 2:
        return SockAddr("?", (("data", bytes(data)),))
    fam = int.from_bytes(data[:2], "little")
    name = _family_name(arch, fam)
    if name == "AF_INET" and len(data) >= 8:
        return SockAddr(name, (("sin_port", int.from_bytes(data[2:4], "big")),
                               ("sin_addr", str(ipaddress.IPv4Address(data[4:8])))))
    if name == "AF_INET6" and len(data) >= 24:
        scope = int.from_bytes(data[24:28], "little") if len(data) >= 28 else 0
        return SockAddr(name, (("sin6_port", int.from_bytes(data[2:4], "big")),
                               ("sin6_flowinfo", int.from_bytes(data[4:8], "big")),
                               ("sin6_addr", str(ipaddress.IPv6Address(data[8:24]))),
                               ("sin6_scope_id", scope)))
    if name == "AF_UNIX":
        path = data[2:]
        if path[:1] != b"\0":
            path = path.split(b"\0", 1)[0]
        return SockAddr(name, (("sun_path", bytes(path)),))
    return SockAddr(name, (("data", bytes(data[2:])),))


def encode_sockaddr(arch, addr: SockAddr) -> bytes:
    a = _arch(arch)
    if addr.family == "?":  # fewer than 2 bytes (an unnamed AF_UNIX sender: none): as they were
        return bytes(dict(addr.fields).get("data", b""))
    fam = addr.family if isinstance(addr.family, int) else a.consts[addr.family]
    head = fam.to_bytes(2, "little")
    f = dict(addr.fields)
    if addr.family == "AF_INET":
        return (head + f["sin_port"].to_bytes(2, "big") + ipaddress.IPv4Address(f["sin_addr"]).packed
                + bytes(8))
    if addr.family == "AF_INET6":
        return (head + f["sin6_port"].to_bytes(2, "big") + f.get("sin6_flowinfo", 0).to_bytes(4, "big")
                + ipaddress.IPv6Address(f["sin6_addr"]).packed + f.get("sin6_scope_id", 0).to_bytes(4, "little"))
    if addr.family == "AF_UNIX":
        p = f["sun_path"]
        return head + p + (b"" if p[:1] == b"\0" else b"\0")
    return head + f.get("data", b"")


def decode_dirents(arch, data: bytes, name: str = "linux_dirent64") -> list[dict]:
    """Records of a getdents64 (linux_dirent64) or getdents (linux_dirent) buffer ->
    [{d_ino, d_off, d_type, d_name}] (d_reclen dropped: it differs between the two formats)."""
    lay = layout(arch, name)
    f = lay.fields
    out, pos = [], 0
    while pos + f["d_reclen"].offset + 2 <= len(data):
        rec_len = read_int(data, pos + f["d_reclen"].offset, f["d_reclen"].size, False)
        if rec_len <= 0 or pos + rec_len > len(data):
            break
        rec = data[pos:pos + rec_len]
        name_off = f["d_name"].offset
        if "d_type" in f:
            d_type = rec[f["d_type"].offset]
            fname = rec[name_off:].split(b"\0", 1)[0]
        else:  # linux_dirent: d_type is the record's last byte
            d_type = rec[-1]
            fname = rec[name_off:-1].split(b"\0", 1)[0]
        out.append({"d_ino": read_int(rec, f["d_ino"].offset, f["d_ino"].size, False),
                    "d_off": read_int(rec, f["d_off"].offset, f["d_off"].size, True),
                    "d_type": d_type, "d_name": fname})
        pos += rec_len
    return out
