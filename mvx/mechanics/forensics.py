"""Where a variant was when it diverged, for the report: the call it is in, its program counter
and stack pointer, its general-purpose registers, the mapping (file and offset) and the symbol the
program counter falls in, the code bytes there and the top of its stack.

Everything is read while the variant still exists (before it is killed). /proc/PID/syscall gives
the call, the stack pointer and the program counter of a blocked task from any thread; the
registers (`registers`, with python-ptrace) only its tracer thread can read, at a ptrace stop: one
the variant is in, or one it is brought to with SIGSTOP (a notified call, hybrid mode, or a variant
running its own code), waited for a bounded time. When they cannot be had, `regs_note` says why
and the /proc fields stand alone."""

from __future__ import annotations

import errno
import os
import signal
import struct
import time
from dataclasses import dataclass, field

from mvx.isa import arch as archmod
from mvx.mechanics.procinfo import mappings

CODE_BEFORE, CODE_AFTER = 16, 16  # bytes of code shown around the program counter
STACK_WORDS = 8
STOP_WAIT = 0.5  # seconds a variant brought to a stop for its registers may take to get there
REGS_PER_LINE = 10


@dataclass(frozen=True)
class Forensics:
    pid: int
    arch: str
    call: str  # "write (nr 4)", "not in a call", "running"
    pc: int | None = None
    sp: int | None = None
    mapping: str = ""  # "/usr/sbin/lighttpd+0x1f2a0 (r-xp)", "[stack] (rwxp)", "(unmapped)"
    symbol: str = ""  # "connection_handle_write+0x40", or "" when the file names none there
    code: bytes = b""  # CODE_BEFORE bytes before the pc and CODE_AFTER from it (less at a mapping's edge)
    code_at: int = 0  # the address of code[0]
    stack: list[int] = field(default_factory=list)
    # the general-purpose registers, in the ISA's own names and order (Arch.gp_regs); empty when
    # they could not be read, and `regs_note` says why
    regs: dict[str, int] = field(default_factory=dict)
    regs_note: str = ""

    def lines(self, who: str) -> list[str]:
        """The report's block for this variant."""
        if self.pc is None:
            return [f"  {who} (pid {self.pid}, {self.arch}): {self.call}", *self._reg_lines()]
        where = f"{self.mapping}" + (f" <{self.symbol}>" if self.symbol else "")
        out = [f"  {who} (pid {self.pid}, {self.arch}) in {self.call}: pc {self.pc:#x} in {where}, sp {self.sp:#x}"]
        if self.code:
            cut = self.pc - self.code_at
            before, after = self.code[:cut].hex(" "), self.code[cut:].hex(" ")
            out.append(f"    code {self.code_at:#x}: {before} [{after[:2]}]{after[2:]}" if after else
                       f"    code {self.code_at:#x}: {before}")
        if self.stack:
            out.append(f"    stack {self.sp:#x}: " + " ".join(f"{w:#x}" for w in self.stack))
        return out + self._reg_lines()

    def _reg_lines(self) -> list[str]:
        if not self.regs:
            return [f"    registers: {self.regs_note}"] if self.regs_note else []
        items = [f"{name} {value:#x}" for name, value in self.regs.items()]
        return ["    regs " + "  ".join(items[i:i + REGS_PER_LINE]) for i in range(0, len(items), REGS_PER_LINE)]

    def as_json(self) -> dict:
        return {"pid": self.pid, "arch": self.arch, "call": self.call, "pc": self.pc, "sp": self.sp,
                "mapping": self.mapping, "symbol": self.symbol, "code": self.code.hex(), "code_at": self.code_at,
                "stack": self.stack, "regs": self.regs, "regs_note": self.regs_note}

    @classmethod
    def from_json(cls, d: dict) -> Forensics:
        regs = d.get("regs") or {}  # (a peer's: only names with whole numbers are kept)
        regs = {str(k): v for k, v in regs.items() if type(v) is int} if isinstance(regs, dict) else {}
        return cls(pid=d["pid"], arch=d["arch"], call=d["call"], pc=d.get("pc"), sp=d.get("sp"),
                   mapping=d.get("mapping", ""), symbol=d.get("symbol", ""), code=bytes.fromhex(d.get("code", "")),
                   code_at=d.get("code_at", 0), stack=list(d.get("stack", [])), regs=regs,
                   regs_note=str(d.get("regs_note", "")))


def registers(pid: int, arch: archmod.Arch, wait: float = STOP_WAIT) -> tuple[dict[str, int], str]:
    """The general-purpose registers of the variant `pid` (of `arch`) in its ISA's names, or ({}, why
    not). Only its tracer thread may call this. A variant in no ptrace stop (blocked in a notified
    call, or running) is sent SIGSTOP, which no program can block or catch: the stop it comes to
    (the signal's delivery, or a traced call on the way) is waited for `wait` seconds at most. A
    stopped variant is not resumed: it is about to be killed."""
    try:
        from ptrace.binding import ptrace_getregs
        from ptrace.error import PtraceError
    except ImportError as exc:
        return {}, f"not read: python-ptrace is not installed ({exc})"
    if not arch.gp_regs:
        return {}, f"not read: no register list for {arch.name}"
    deadline, stopped = time.monotonic() + wait, False
    while True:
        try:
            raw = bytes(ptrace_getregs(pid))
            break
        except PtraceError as exc:
            if exc.errno != errno.ESRCH:
                return {}, f"not read: ptrace: {os.strerror(exc.errno) if exc.errno else exc}"
        state = _state(pid)  # ESRCH: in no ptrace stop (or no longer ours)
        if state in ("", "Z", "X"):
            return {}, "not read: the variant ended before it could be stopped"
        if not stopped:
            stopped = True
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError as exc:
                return {}, f"not read: SIGSTOP: {exc.strerror}"
        elif time.monotonic() > deadline:
            return {}, f"not read: the variant did not come to a ptrace stop within {wait:g}s (state {state})"
        time.sleep(0.002)
    host = archmod.get(arch.regset)  # the regset's own layout: an i386 tracee is seen through x86_64's
    offsets, width, mask = host.reg_offsets, host.word_size, (1 << (8 * arch.word_size)) - 1
    return {name: int.from_bytes(raw[offsets[f]:offsets[f] + width], "little") & mask
            for name, f in arch.gp_regs}, ""


def _state(pid: int) -> str:
    """The one-letter state of /proc/PID/stat ("" when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return ""


def capture(pid: int, arch: archmod.Arch, read, regs: dict[str, int] | None = None,
            regs_note: str = "") -> Forensics | None:
    """The variant `pid` (of `arch`) now; `read(addr, n)` reads its memory; `regs` its registers
    when its tracer read them (`registers`), else `regs_note` says why not. None when it is gone."""
    regs = regs or {}
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
    except OSError:
        return None
    if not fields or fields[0] == "running":
        if not regs:
            return Forensics(pid, arch.name, "running (no call: its registers cannot be read without stopping it)",
                             regs_note=regs_note)
        fields = ["-1", "0", "0"]  # (stopped since: the registers say where)
    nr = int(fields[0])
    sp, pc = int(fields[-2], 16), int(fields[-1], 16)
    if regs:  # the registers, read at a stop, are the truth /proc/PID/syscall's two fields repeat
        names = {f: name for name, f in arch.gp_regs}
        pc, sp = regs.get(names.get(arch.ip_reg, ""), pc), regs.get(names.get(arch.sp_reg, ""), sp)
    call = f"{arch.names.get(nr, 'syscall')} (nr {nr})" if nr >= 0 else "no call (stopped)"
    mapping, symbol, start, end = _where(pid, pc)
    code_at = max(pc - CODE_BEFORE, start) if start is not None else pc
    code = _read(read, code_at, min(pc + CODE_AFTER, end) - code_at) if end is not None else b""
    raw = _read(read, sp, STACK_WORDS * arch.word_size)
    fmt = "<Q" if arch.word_size == 8 else "<I"
    stack = [struct.unpack_from(fmt, raw, i)[0] for i in range(0, len(raw) - arch.word_size + 1, arch.word_size)]
    return Forensics(pid, arch.name, call, pc, sp, mapping, symbol, code, code_at, stack, regs, regs_note)


def _read(read, addr: int, n: int) -> bytes:
    if n <= 0:
        return b""
    try:
        return read(addr, n)
    except OSError:
        return b""


def _where(pid: int, pc: int) -> tuple[str, str, int | None, int | None]:
    """(the mapping's text, the symbol, its start, its end) for `pc`."""
    maps = mappings(pid)
    if maps is None:
        return "(maps unreadable)", "", None, None
    for m in maps:
        if m.lo <= pc < m.hi:
            if m.path.startswith("/"):
                off = pc - m.lo + m.offset
                return (f"{m.path}+{off:#x} ({m.perms})", _symbol(f"/proc/{pid}/map_files/{m.text}", off),
                        m.lo, m.hi)
            return f"{m.path or 'anonymous'} ({m.perms})", "", m.lo, m.hi
    return "(unmapped)", "", None, None


def _symbol(path: str, file_offset: int) -> str:
    """The ELF symbol (function or object) holding the byte at `file_offset` of the file at `path`
    (opened through /proc/PID/map_files: the very file mapped, in the variant's own world), with
    the offset into it; "" when the file has no symbol there or is not ELF."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)
    except OSError:
        return ""
    try:
        return _elf_symbol(data, file_offset)
    except (struct.error, IndexError, ValueError):
        return ""


def _elf_symbol(data: bytes, file_offset: int) -> str:
    if data[:4] != b"\x7fELF" or data[5] != 1:  # little-endian only (x86_64, i386, aarch64)
        return ""
    wide = data[4] == 2
    if wide:
        _, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _ = struct.unpack_from(
            "<HHIQQQIHHHHHH", data, 16)
    else:
        _, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _ = struct.unpack_from(
            "<HHIIIIIHHHHHH", data, 16)
    vaddr = None  # the file offset as a virtual address of the file's own layout
    for i in range(phnum):
        at = phoff + i * phentsize
        if wide:
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", data, at)
        else:
            p_type, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIIII", data, at)
        if p_type == 1 and p_offset <= file_offset < p_offset + p_filesz:  # PT_LOAD
            vaddr = p_vaddr + file_offset - p_offset
            break
    if vaddr is None:
        return ""
    sections = []
    for i in range(shnum):
        at = shoff + i * shentsize
        if wide:
            _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize = struct.unpack_from("<IIQQQQIIQQ", data, at)
        else:
            _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize = struct.unpack_from("<IIIIIIIIII", data, at)
        sections.append((sh_type, sh_offset, sh_size, sh_link, sh_entsize))
    best = None
    for sh_type, sh_offset, sh_size, sh_link, sh_entsize in sections:
        if sh_type not in (2, 11) or not sh_entsize:  # SHT_SYMTAB, SHT_DYNSYM
            continue
        strtab = sections[sh_link]
        for at in range(sh_offset, sh_offset + sh_size, sh_entsize):
            if wide:
                name, info, _, shndx, value, size = struct.unpack_from("<IBBHQQ", data, at)
            else:
                name, value, size, info, _, shndx = struct.unpack_from("<IIIBBH", data, at)
            if shndx == 0 or (info & 0xF) not in (1, 2) or not value:  # STT_OBJECT, STT_FUNC, defined
                continue
            if value <= vaddr < value + max(size, 1) and (best is None or value > best[0]):
                end = data.index(b"\0", strtab[1] + name)
                best = (value, data[strtab[1] + name:end].decode(errors="replace"))
    if best is None:
        return ""
    return f"{best[1]}+{vaddr - best[0]:#x}"

