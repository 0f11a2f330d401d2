"""What a monitor learns about its variant from /proc: where the dynamic loader's code is, and what
kind of file each fd is.

Startup noise: the dynamic loader (ld.so) opens, reads, maps and protects different library files
of different sizes on each ISA, and dlopen() runs the same code later (lighttpd's modules). Such
calls are never synced: a call whose instruction pointer is inside the loader's code runs locally
and is not compared (docs/DESIGN.md, "Startup noise"). Everything the program itself does,
including libc on its behalf, is synced.

File kinds decide a call's class where the policy says so (a read from a socket is replicated, a
read from a regular file runs locally in each variant)."""

from __future__ import annotations

import os
import re
import stat
from typing import NamedTuple


class Mapping(NamedTuple):
    """One line of /proc/PID/maps."""

    lo: int
    hi: int
    perms: str
    offset: int
    path: str  # "" for an anonymous mapping; "[stack]", "[vdso]", ...
    text: str  # the address range as written there ("lo-hi", hex): /proc/PID/map_files/<text>


def mappings(pid: int) -> list[Mapping] | None:
    """The process's mappings in address order; None when /proc cannot say."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = []
    for line in lines:
        parts = line.split(None, 5)
        lo, hi = parts[0].split("-")
        out.append(Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16),
                           parts[5].strip() if len(parts) == 6 else "", parts[0]))
    return out


_LOADER = re.compile(r"/ld-linux[^/]*\.so[^/]*$|/ld-[0-9.]+\.so$|/ld-musl-[^/]*\.so[^/]*$")


# i386 without a vDSO: libc enters the kernel through the loader's _dl_sysinfo_int80 stub,
# `int $0x80; ret`; the loader's own calls are inline `int $0x80` followed by other code
_INT80_STUB = bytes.fromhex("cd80c3")


class LoaderRange:
    """Calls made by the variant's dynamic loader itself: their instruction pointer is in one of
    its executable mappings (read once per exec image), and not in the i386 syscall stub that
    the loader lends libc when the vDSO is hidden (`read(addr, n)` reads the variant's memory)."""

    def __init__(self, pid: int, read=None) -> None:
        self.pid = pid
        self.read = read
        self.ranges: list[tuple[int, int]] | None = None
        self._seen: dict[int, bool] = {}  # ip in the loader -> the loader's own call

    def reset(self) -> None:
        """After an execve: the new image has its own loader mapping."""
        self.ranges = None
        self._seen.clear()

    def _load(self) -> list[tuple[int, int]]:
        return [(m.lo, m.hi) for m in mappings(self.pid) or () if "x" in m.perms and _LOADER.search(m.path)]

    def contains(self, ip: int) -> bool:
        """Whether the call at `ip` is the loader's own."""
        own = self._seen.get(ip)
        if own is not None:
            return own
        if self.ranges is None:
            self.ranges = self._load()
        own = any(lo <= ip < hi for lo, hi in self.ranges)
        if own and self.read is not None:
            try:
                own = self.read(ip - 2, 3) != _INT80_STUB
            except OSError:
                pass
        self._seen[ip] = own
        return own


def kind_of_mode(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISCHR(mode):
        return "chardev"
    return "other"


class FdKinds:
    """fd -> "socket" | "pipe" | "file" | "dir" | "chardev" | "signalfd" | "other" | "none" (not open), cached
    until the fd is closed or reused (the monitor calls `forget` on every fd-table change it sees)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cache: dict[int, str] = {}

    def get(self, fd: int) -> str:
        found = self._cache.get(fd)
        if found is None:
            try:
                found = kind_of_mode(os.stat(f"/proc/{self.pid}/fd/{fd}").st_mode)
                if found == "other" and os.readlink(f"/proc/{self.pid}/fd/{fd}") == "anon_inode:[signalfd]":
                    found = "signalfd"  # reads the reader's own signals: never read by the monitor
            except OSError:
                found = "none"
            self._cache[fd] = found
        return found

    def forget(self, fd: int) -> None:
        self._cache.pop(fd, None)


def _status_masks(pid: int, fields: tuple[str, ...]) -> int | None:
    """The OR of the signal masks /proc/PID/status shows under `fields` (bit n-1: signal n); None
    when /proc cannot say."""
    mask, seen = 0, False
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(fields):
                    mask |= int(line.split()[1], 16)
                    seen = True
    except (OSError, ValueError, IndexError):
        return None
    return mask if seen else None


def blocked_signals(pid: int) -> int | None:
    """The signals the process blocks now (SigBlk); None when /proc cannot say."""
    return _status_masks(pid, ("SigBlk:",))


def pending_signals(pid: int) -> int:
    """The signals pending for the process, its thread's and its own (SigPnd | ShdPnd); 0 when
    /proc cannot say."""
    return _status_masks(pid, ("SigPnd:", "ShdPnd:")) or 0


def signalfd_mask(pid: int, fd: int) -> int:
    """The signals a process's signalfd takes (its fdinfo "sigmask"); 0 when /proc cannot say."""
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("sigmask:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0
