"""seccomp-BPF filters from a trap set, built with libseccomp (pyseccomp).

One filter covers every arch the exec can land in (an x86_64 monitor exec'ing an i386 binary needs
x86_64 and i386 rules); syscalls outside the trap set are allowed at native speed. Canonical names
become raw selectors per arch through mvx.isa.syscalls (i386 socketcall is matched on its sub-call).

A notified call may be notified only in some forms: `trace_when_set` names, per canonical call, the
arguments that make it one only the variant can make when they are not 0 (epoll_pwait's signal
mask: Traits.trace_when_set). Its raw forms are then notified when every such argument is 0 and
trapped with RET_TRACE otherwise (seccomp argument conditions on the registers that carry them); a
raw form without the argument (epoll_wait: always NULL) stays notified, and one whose argument no
filter can read (a multiplexer's sub-call, in memory) is traced in every form."""

from __future__ import annotations

import enum
import struct
import tempfile
from typing import TYPE_CHECKING

import pyseccomp

from mvx import MvxError
from mvx.isa.arch import UnknownSyscall
from mvx.isa.syscalls import Lit, raw_arg_of, raw_selectors

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


def _add_rules(f: pyseccomp.SyscallFilter, action: Trap, name: str, args: list, when: list[int | Lit | None]) -> None:
    """The rules of one raw selector: `action`, or RET_TRACE where one of `when` (raw arguments
    from raw_arg_of) is not 0."""
    if action is Trap.NOTIFY and any(w is None or (isinstance(w, Lit) and w.value) for w in when):
        action = Trap.TRACE  # the argument cannot be tested (or is always set): every form is traced
    regs = sorted({w for w in when if isinstance(w, int)}) if action is Trap.NOTIFY else []
    if not regs:
        f.add_rule(_action(action), name, *args)
        return
    f.add_rule(_action(Trap.NOTIFY), name, *args, *[pyseccomp.Arg(i, pyseccomp.EQ, 0) for i in regs])
    for i in regs:
        f.add_rule(_action(Trap.TRACE), name, *args, pyseccomp.Arg(i, pyseccomp.NE, 0))


def _arch_filter(arch: Arch, rules: dict[str, Trap], trace_when_set: dict[str, tuple[str, ...]]) -> pyseccomp.SyscallFilter:
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
            when = [raw_arg_of(arch, sel, canonical, a) for a in trace_when_set.get(canonical, ())]
            _add_rules(f, action, name, args, when)
    return f


def _merged_filter(arches: list[Arch], rules: dict[str, Trap],
                   trace_when_set: dict[str, tuple[str, ...]] | None = None) -> pyseccomp.SyscallFilter:
    """One filter with a section per arch (libseccomp merges single-arch filters)."""
    first, *rest = [_arch_filter(arch, rules, trace_when_set or {}) for arch in arches]
    for f in rest:
        first.merge(f)
    return first


def _export(f: pyseccomp.SyscallFilter, how: str) -> bytes:
    with tempfile.TemporaryFile() as out:
        getattr(f, how)(out)
        out.seek(0)
        return out.read()


def build_bpf(arches: list[Arch], rules: dict[str, Trap],
              trace_when_set: dict[str, tuple[str, ...]] | None = None) -> bytes:
    """The BPF program (struct sock_filter array) trapping `rules` on every arch in `arches` (a
    notified call RET_TRACE'd where one of its `trace_when_set` arguments is not 0)."""
    return _export(_merged_filter(arches, rules, trace_when_set), "export_bpf")


_LD_ABS_W, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_SECCOMP_RET_ALLOW = 0x7FFF0000
_GATE_CALLS = ("pread64",)  # harmless from anyone: it changes nothing outside the caller's memory


def gate_prefix(arches: list[Arch], gate: int) -> bytes:
    """BPF put before the filter: the calls of _GATE_CALLS made from the page at `gate` (the leader's
    in-process agent's gate, mvx_agent.h) run untrapped; everything else goes on to the filter. (The
    agent claims each; its monitor records them. Classic BPF jumps only forward, so the filter after
    it is unchanged.)"""
    if gate <= 0 or gate % 4096 or gate + 4096 > 1 << 32:
        raise ValueError(f"gate page {gate:#x}: page-aligned, below 4 GiB")
    out = []

    def ins(code: int, jt: int, jf: int, k: int) -> None:
        out.append(struct.pack("<HBBI", code, jt, jf, k))

    for arch in arches:
        for name in _GATE_CALLS:
            try:
                nr = arch.nr(name)
            except UnknownSyscall:
                continue
            # seccomp_data: nr at 0, arch at 4, instruction_pointer at 8 (low word) and 12
            ins(_LD_ABS_W, 0, 0, 4)
            ins(_JEQ_K, 0, 8, arch.audit_arch)
            ins(_LD_ABS_W, 0, 0, 0)
            ins(_JEQ_K, 0, 6, nr)
            ins(_LD_ABS_W, 0, 0, 12)
            ins(_JEQ_K, 0, 4, 0)
            ins(_LD_ABS_W, 0, 0, 8)
            ins(_JGE_K, 0, 2, gate)
            ins(_JGE_K, 1, 0, gate + 4096)
            ins(_RET_K, 0, 0, _SECCOMP_RET_ALLOW)
    return b"".join(out)


def describe(arches: list[Arch], rules: dict[str, Trap], trace_when_set: dict[str, tuple[str, ...]] | None = None) -> str:
    """libseccomp's pseudo-code for the filter, for reading in tests and by people."""
    return _export(_merged_filter(arches, rules, trace_when_set), "export_pfc").decode()


def traced_numbers(arch: Arch, names: set[str]) -> set[int]:
    """Raw numbers the ptrace-mode loop reports for `names` (socketcall whole: no arg filter there)."""
    return {sel.nr for name in names for sel in raw_selectors(arch, name)}


__all__ = ["TRACE_DATA", "build_bpf", "describe", "traced_numbers"]
