"""Arch objects: what mvx must know about an ISA to read and write a tracee's syscalls.

The numbers (syscall numbers, constants, struct layouts, register offsets) are generated from the
kernel and libc headers by scripts/gen_archdata.py into mvx/isa/archdata/<arch>.py and imported only
when first used, so `import mvx.isa.arch` stays cheap. The calling conventions below are declared here,
by hand, because no header states them in a usable form.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import NamedTuple

from mvx import MvxError

__all__ = [
    "ARCHES", "Arch", "Field", "Layout", "UnknownArch", "UnknownConst", "UnknownSyscall",
    "from_audit", "from_elf", "get",
]


class UnknownArch(MvxError):
    """An arch name, audit arch or ELF machine mvx has no variant support for."""


class UnknownSyscall(MvxError):
    """A syscall name or number that the given arch does not have."""


class UnknownConst(MvxError):
    """A constant or struct layout missing from an arch's generated tables."""


class Field(NamedTuple):
    """One struct member as the kernel ABI of an arch lays it out (unpacks as a 3-tuple)."""

    offset: int
    size: int
    signed: bool


class Layout(NamedTuple):
    """A struct's size and its fields by name (unpacks as `size, fields`)."""

    size: int
    fields: Mapping[str, Field]

    def field(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise UnknownConst(f"struct has no field {name!r} (fields: {', '.join(self.fields)})") from None



@dataclass(frozen=True)
class Arch:
    """One ISA: its calling convention (declared fields) and generated tables (lazy properties).

    x86_64 and i386 tracees are both seen by the 64-bit tracer through the x86_64
    `user_regs_struct` (regset "x86_64"), so i386 arguments are named by 64-bit registers.
    On aarch64 the registers are `user_pt_regs` (NT_PRSTATUS) and the syscall number can only be
    changed through the separate NT_ARM_SYSTEM_CALL regset (`nr_write_regset`).
    """

    name: str
    nr_reg: str
    arg_regs: tuple[str, ...]
    ret_reg: str
    regset: str
    nr_write_regset: str | None  # None: the number is written through nr_reg in `regset`
    elf_machine: int
    elf_class: int  # 1: ELFCLASS32, 2: ELFCLASS64
    ip_reg: str
    sp_reg: str
    syscall_insn_len: int  # bytes of the syscall instruction (an ip rewind makes the call again)
    # the general-purpose registers a report shows, in order: (this ISA's name, the `regset` field
    # it is read from); an i386 register is the low half of its 64-bit field
    gp_regs: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"<Arch {self.name}>"

    # --- generated tables, imported on first use -------------------------------------------------

    @cached_property
    def _data(self):
        try:
            return importlib.import_module(f"mvx.isa.archdata.{self.name}")
        except ModuleNotFoundError as e:
            raise MvxError(f"mvx/isa/archdata/{self.name}.py is missing ({e}); "
                           "run: python3 scripts/gen_archdata.py") from None

    @cached_property
    def audit_arch(self) -> int:
        return self._data.AUDIT_ARCH

    @cached_property
    def word_size(self) -> int:
        return self._data.WORD_SIZE

    @cached_property
    def names(self) -> Mapping[int, str]:
        return MappingProxyType(dict(self._data.SYSCALLS))

    @cached_property
    def numbers(self) -> Mapping[str, int]:
        return MappingProxyType({name: nr for nr, name in self._data.SYSCALLS.items()})

    @cached_property
    def consts(self) -> Mapping[str, int]:
        return MappingProxyType(dict(self._data.CONSTS))

    @cached_property
    def neutral_consts(self) -> Mapping[str, int]:
        """Constants outside CONSTS' families (CLONE_*, STATX_*, ioctl requests...), equal on
        every ISA: they fill gaps of `consts`."""
        return MappingProxyType(dict(self._data.NEUTRAL_CONSTS))

    @cached_property
    def kernel_consts(self) -> Mapping[str, int]:
        """Values as the kernel sees them: O_LARGEFILE of the UAPI, the kernel-internal restart
        codes (ERESTARTSYS...)."""
        return MappingProxyType(dict(self._data.KERNEL_CONSTS))

    @cached_property
    def restart_codes(self) -> frozenset[int]:
        """Syscall results meaning "interrupted by a signal, about to be made again" (negated
        ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK)."""
        return frozenset(-v for n, v in self.kernel_consts.items() if n.startswith("ERESTART"))

    @cached_property
    def native_on(self) -> frozenset[str]:
        """Host ISAs whose kernel runs this ISA's binaries natively (not under emulation)."""
        return frozenset(self._data.NATIVE_ON)

    @cached_property
    def layouts(self) -> Mapping[str, Layout]:
        return MappingProxyType({
            s: Layout(size, MappingProxyType({f: Field(*t) for f, t in fields.items()}))
            for s, (size, fields) in self._data.LAYOUTS.items()
        })

    @cached_property
    def reg_offsets(self) -> Mapping[str, int]:
        return MappingProxyType(dict(self._data.REGS))

    @cached_property
    def regset_size(self) -> int:
        return self._data.REGSET_SIZE

    # --- lookups with one-line errors ------------------------------------------------------------

    def nr(self, name: str) -> int:
        """Syscall number of `name` on this arch."""
        try:
            return self.numbers[name]
        except KeyError:
            raise UnknownSyscall(f"{self.name} has no syscall {name!r}") from None

    def name_of(self, nr: int) -> str:
        """Syscall name of number `nr` on this arch."""
        try:
            return self.names[nr]
        except KeyError:
            raise UnknownSyscall(f"{self.name} has no syscall number {nr}") from None

    def has_syscall(self, name: str) -> bool:
        return name in self.numbers

    def const(self, name: str) -> int:
        """Value of a constant (e.g. "O_CLOEXEC") as this arch's kernel ABI defines it."""
        try:
            return self.consts[name]
        except KeyError:
            raise UnknownConst(f"{self.name} has no constant {name!r}") from None

    def layout(self, name: str) -> Layout:
        """Kernel-ABI layout of a struct (e.g. "epoll_event") on this arch."""
        try:
            return self.layouts[name]
        except KeyError:
            raise UnknownConst(f"{self.name} has no struct layout {name!r} "
                               f"(known: {', '.join(sorted(self.layouts))})") from None

    def family(self, prefix: str) -> dict[str, int]:
        """All constants whose name starts with `prefix` (e.g. "EPOLL", "AF_")."""
        return {n: v for n, v in self.consts.items() if n.startswith(prefix)}

    def names_for(self, prefix: str, value: int) -> list[str]:
        """Sorted names of the `prefix` family equal to `value` (several when aliases exist)."""
        return sorted(n for n, v in self.family(prefix).items() if v == value)


_X86_REGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
_X86_64_GP = tuple((r, r) for r in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10",
                                    "r11", "r12", "r13", "r14", "r15", "rip", "eflags", "orig_rax"))
_I386_GP = (("eax", "rax"), ("ebx", "rbx"), ("ecx", "rcx"), ("edx", "rdx"), ("esi", "rsi"), ("edi", "rdi"),
            ("ebp", "rbp"), ("esp", "rsp"), ("eip", "rip"), ("eflags", "eflags"), ("orig_eax", "orig_rax"))
_AARCH64_GP = tuple((f"x{i}", f"x{i}") for i in range(31)) + (("sp", "sp"), ("pc", "pc"), ("pstate", "pstate"))
ARCHES: dict[str, Arch] = {
    "x86_64": Arch("x86_64", nr_reg="orig_rax", arg_regs=_X86_REGS, ret_reg="rax",
                   regset="x86_64", nr_write_regset=None, elf_machine=62, elf_class=2,
                   ip_reg="rip", sp_reg="rsp", syscall_insn_len=2, gp_regs=_X86_64_GP),
    # int 0x80 / sysenter convention, seen through the 64-bit user_regs_struct.
    "i386": Arch("i386", nr_reg="orig_rax", arg_regs=("rbx", "rcx", "rdx", "rsi", "rdi", "rbp"),
                 ret_reg="rax", regset="x86_64", nr_write_regset=None, elf_machine=3, elf_class=1,
                 ip_reg="rip", sp_reg="rsp", syscall_insn_len=2,  # int $0x80, sysenter: 2 bytes
                 gp_regs=_I386_GP),
    "aarch64": Arch("aarch64", nr_reg="x8", arg_regs=("x0", "x1", "x2", "x3", "x4", "x5"),
                    ret_reg="x0", regset="aarch64", nr_write_regset="NT_ARM_SYSTEM_CALL",
                    elf_machine=183, elf_class=2, ip_reg="pc", sp_reg="sp", syscall_insn_len=4,
                    gp_regs=_AARCH64_GP),
}

ALIASES = {
    "amd64": "x86_64", "x86-64": "x86_64", "x64": "x86_64",
    "i686": "i386", "i586": "i386", "i486": "i386", "x86": "i386", "ia32": "i386",
    "arm64": "aarch64",
}


def _supported() -> str:
    return ", ".join(ARCHES)


_BY_NAME: dict[str, Arch] = {}  # every name asked for so far (this runs for every decoded value)


def get(name: str | Arch) -> Arch:
    """The Arch called `name` (aliases such as amd64, i686, arm64 accepted)."""
    if isinstance(name, Arch):
        return name
    a = _BY_NAME.get(name)
    if a is not None:
        return a
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    try:
        a = _BY_NAME[name] = ARCHES[key]
    except KeyError:
        raise UnknownArch(f"unknown arch {name!r}; supported: {_supported()}") from None
    return a


def from_audit(audit_arch: int) -> Arch:
    """The Arch of an AUDIT_ARCH_* value, as PTRACE_GET_SYSCALL_INFO and seccomp report it."""
    for a in ARCHES.values():
        if a.audit_arch == audit_arch:
            return a
    raise UnknownArch(f"unknown audit arch 0x{audit_arch:08x}; supported: {_supported()}")


_EM_NAMES = {40: "ARM", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "S390", 243: "RISC-V",
             2: "SPARC", 43: "SPARCV9", 258: "LoongArch"}


def from_elf(path) -> Arch:
    """The Arch a binary is built for, from its ELF header (e_ident class and e_machine)."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(20)
    except OSError as e:
        raise MvxError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(hdr) < 20 or hdr[:4] != b"\x7fELF":
        raise MvxError(f"{path}: not an ELF file")
    elf_class, data = hdr[4], hdr[5]
    if data not in (1, 2):
        raise MvxError(f"{path}: bad ELF data encoding {data}")
    machine = int.from_bytes(hdr[18:20], "little" if data == 1 else "big")
    for a in ARCHES.values():
        if a.elf_machine == machine and a.elf_class == elf_class:
            return a
    what = _EM_NAMES.get(machine, f"e_machine {machine}")
    if machine == 62 and elf_class == 1:
        what = "x32"
    bits = {1: "32", 2: "64"}.get(elf_class, "?")
    raise UnknownArch(f"{path}: unsupported ELF machine {what} ({bits}-bit); supported: {_supported()}")
