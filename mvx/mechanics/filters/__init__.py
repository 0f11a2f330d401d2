"""seccomp-BPF filters from a trap set, built with libseccomp (pyseccomp).

One filter covers every arch the exec can land in (an x86_64 monitor exec'ing an i386 binary needs
x86_64 and i386 rules); syscalls outside the trap set are allowed at native speed. Canonical names
become raw selectors per arch through mvx.isa.syscalls (i386 socketcall is matched on its sub-call)."""

from __future__ import annotations

import enum
import tempfile
from typing import TYPE_CHECKING

import pyseccomp

from mvx import MvxError
from mvx.isa.syscalls import raw_selectors

if TYPE_CHECKING:
    from mvx.isa.arch import Arch


class Trap(enum.Enum):
    """What the filter does with a synced syscall."""

    TRACE = "trace"
    NOTIFY = "notify"


# AUDIT_ARCH -> libseccomp's arch token
_SECCOMP_ARCH = {
    "x86_64": pyseccomp.Arch.X86_64,
    "i386": pyseccomp.Arch.X86,
    "aarch64": pyseccomp.Arch.AARCH64,
}
# RET_TRACE data: lets a reader of a seccomp stop tell our traps apart from anything else
TRACE_DATA = 0x6d76  # "mv"


def _action(action: Trap) -> int:
    return pyseccomp.NOTIFY if action is Trap.NOTIFY else pyseccomp.TRACE(TRACE_DATA)


def _arch_filter(arch: Arch, rules: dict[str, Trap]) -> pyseccomp.SyscallFilter:
    f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    token = _SECCOMP_ARCH[arch.name]
    if not f.exist_arch(token):
        f.add_arch(token)
    native = pyseccomp.system_arch()
    if native != token:
        f.remove_arch(native)
    seen: set[tuple[int, int | None]] = set()
    for canonical, action in sorted(rules.items()):
        for sel in raw_selectors(arch, canonical):
            key = (sel.nr, sel.arg0_equals)
            if key in seen:
                continue
            seen.add(key)
            name = arch.name_of(sel.nr)
            try:
                nr = pyseccomp.resolve_syscall(token, name)
            except (OSError, ValueError, RuntimeError):
                raise MvxError(f"libseccomp does not know {arch.name} syscall {name}") from None
            if nr >= 0 and nr != sel.nr:  # negative: libseccomp's pseudo number of a multiplexed call
                raise MvxError(f"libseccomp numbers {arch.name} {name} as {nr}, the kernel as {sel.nr}")
            args = [] if sel.arg0_equals is None else [pyseccomp.Arg(0, pyseccomp.EQ, sel.arg0_equals)]
            f.add_rule(_action(action), name, *args)
    return f


def _merged_filter(arches: list[Arch], rules: dict[str, Trap]) -> pyseccomp.SyscallFilter:
    """One filter with a section per arch (libseccomp merges single-arch filters)."""
    first, *rest = [_arch_filter(arch, rules) for arch in arches]
    for f in rest:
        first.merge(f)
    return first


def _export(f: pyseccomp.SyscallFilter, how: str) -> bytes:
    with tempfile.TemporaryFile() as out:
        getattr(f, how)(out)
        out.seek(0)
        return out.read()


def build_bpf(arches: list[Arch], rules: dict[str, Trap]) -> bytes:
    """The BPF program (struct sock_filter array) trapping `rules` on every arch in `arches`."""
    return _export(_merged_filter(arches, rules), "export_bpf")


def describe(arches: list[Arch], rules: dict[str, Trap]) -> str:
    """libseccomp's pseudo-code for the filter, for reading in tests and by people."""
    return _export(_merged_filter(arches, rules), "export_pfc").decode()


def traced_numbers(arch: Arch, names: set[str]) -> set[int]:
    """Raw numbers the ptrace-mode loop reports for `names` (socketcall whole: no arg filter there)."""
    return {sel.nr for name in names for sel in raw_selectors(arch, name)}


__all__ = ["TRACE_DATA", "build_bpf", "describe", "traced_numbers"]
