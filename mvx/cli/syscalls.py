"""`mvx syscalls`: show the canonical syscall table and how each ISA's raw syscalls map to it.

    mvx syscalls --arch x86_64            every raw syscall: nr, raw name, canonical name
    mvx syscalls --arch i386 socketcall   one entry (by name or number), with argument registers
    mvx syscalls --canonical [NAME]       the canonical table (or one canonical spec)
"""

from __future__ import annotations

import argparse

from mvx import MvxError
from mvx.isa import syscalls as S


def describe_kind(kind: S.Kind) -> str:
    """A short description of an argument kind, e.g. Flags(O_), InBuf(len=arg2)."""
    name = type(kind).__name__
    arg = lambda i: f"arg{i}"
    if isinstance(kind, S.Int | S.Uint):
        base = {"int": name, "long": "Long" if name == "Int" else "Ulong", "s64": "Int64",
                "u64": "U64"}[kind.size]
        return base + ("" if kind.compared else " (not compared)")
    if isinstance(kind, S.Flags | S.Enum):
        fam = kind.family if isinstance(kind.family, str) else "|".join(kind.family[:3]) + (
            "|..." if len(kind.family) > 3 else "")
        return f"{name}({fam})"
    if isinstance(kind, S.InBuf):
        return f"InBuf(len={arg(kind.len_arg) if kind.size is None else kind.size})"
    if isinstance(kind, S.OutBuf):
        if kind.len_from_ret:
            return "OutBuf(len=ret)"
        if kind.len_ptr_arg is not None:
            return f"OutBuf(len=*{arg(kind.len_ptr_arg)})"
        return f"OutBuf(len={arg(kind.len_arg)})"
    if isinstance(kind, S.InStruct | S.OutStruct | S.InOutStruct | S.Dirents):
        return f"{name}({kind.layout})"
    if isinstance(kind, S.StructArray):
        n = "ret" if kind.count_from_ret else (kind.count if kind.count is not None else arg(kind.count_arg))
        return f"StructArray({kind.layout}, count={n}, {kind.dir})"
    if isinstance(kind, S.IovecIn | S.IovecOut):
        return f"{name}(count={arg(kind.count_arg)})"
    if isinstance(kind, S.SockAddrIn):
        return f"SockAddrIn(len={arg(kind.len_arg)})"
    if isinstance(kind, S.SockAddrOut):
        return f"SockAddrOut(len=*{arg(kind.len_ptr_arg)})"
    if isinstance(kind, S.SigSetIn | S.SigSetOut):
        return f"{name}(size={kind.size if kind.size is not None else arg(kind.size_arg)})"
    if isinstance(kind, S.InOutInt | S.OutInt):
        return f"{name}({kind.size})"
    if isinstance(kind, S.Switch):
        return f"Switch(on arg{kind.on}: {', '.join(n for n, _ in kind.cases)}; else {describe_kind(kind.default)})"
    if isinstance(kind, S.Uid) and kind.bits == 16:
        return "Uid(16-bit)"
    return name


def _source(src, regs) -> str:
    if isinstance(src, int):
        return f"arg{src} ({regs[src]})"
    if isinstance(src, str):
        return src
    if isinstance(src, S.Lit):
        v = src.value
        return "NULL/0" if v == 0 else repr(v)
    if isinstance(src, S.Pair):
        return f"arg{src.hi} ({regs[src.hi]}) << 32 | arg{src.lo} ({regs[src.lo]})"
    if isinstance(src, S.Mul):
        return f"arg{src.arg} ({regs[src.arg]}) * {src.factor}"
    if isinstance(src, S.MsToTime):
        return f"arg{src.arg} ({regs[src.arg]}) ms as a time"
    return repr(src)


def _short(src) -> str:
    if isinstance(src, str):
        return src
    if isinstance(src, S.Lit):
        return "NULL" if src.value == 0 else repr(src.value)
    return ""


def _entry_lines(a, nr: int, raw: str, name_width: int = 0) -> list[str]:
    regs = a.arg_regs
    lines = []
    dm = S.demux_for(a, raw)
    if dm is not None:
        lines.append(f"{raw} = {nr} on {a.name} (number in {a.nr_reg}): demultiplexed")
        lines.append(f"  {dm.note}")
        if isinstance(dm, S.MemDemux):
            where = f"{a.word_size * 8}-bit words at arg{dm.ptr_arg} ({regs[dm.ptr_arg]})"
            if dm.selector_arg is not None:
                lines.append(f"  sub-call: arg{dm.selector_arg} ({regs[dm.selector_arg]}); arguments: {where}")
            else:
                lines.append(f"  arguments: {where}")
            for sel, (sub, n) in sorted(dm.table.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
                canon = S.canonical_of(a, sub)
                spec = S.spec_of(canon)
                head = f"  {sel:>3} " if sel is not None else "  "
                lines.append(f"{head}{sub} ({n} args) -> {spec.signature()}")
        else:
            lines.append(f"  sub-call: arg{dm.selector_arg} ({regs[dm.selector_arg]}) & 0x{dm.mask:x}")
            for sel, (sub, srcs) in sorted(dm.table.items()):
                spec = S.spec_of(S.canonical_of(a, sub))
                lines.append(f"  {sel:>3} {sub} <- ({', '.join(f'arg{i}' for i in srcs)}) -> {spec.signature()}")
        return lines
    alias = S.alias_for(a, raw)
    canon = S.canonical_of(a, raw)
    spec = S.spec_of(canon)
    kinds = S.alias_kinds(spec, alias)
    srcs = list(alias.args) if alias and alias.args is not None else list(range(spec.nargs))
    srcs += [S.Lit(0)] * (spec.nargs - len(srcs))
    shown = ", ".join(_short(s) or spec.arg_names[i] for i, s in enumerate(srcs))
    lines.append(f"{raw} = {nr} on {a.name} (number in {a.nr_reg}) -> {canon}({shown})"
                 + ("  [generic]" if spec.generic else ""))
    width = max((len(n) for n in spec.arg_names), default=0)
    for i, (n, k, s) in enumerate(zip(spec.arg_names, kinds, srcs)):
        lines.append(f"  {i}: {n:<{width}}  {describe_kind(k):<28} <- {_source(s, regs)}")
    lines.append(f"  returns {describe_kind(spec.ret)} in {a.ret_reg}"
                 + (f" (via *arg{alias.ret_from_arg[0]})" if alias and alias.ret_from_arg else ""))
    if alias and alias.note:
        lines.append(f"  note: {alias.note}")
    return lines


def _lookup(a, what: str) -> tuple[int, str]:
    w = what.strip()
    try:
        nr = int(w, 0)
    except ValueError:
        if w in a.numbers:
            return a.numbers[w], w
        hint = ""
        if w in S.SPECS or w in S.canonical_names():
            sels = S.raw_selectors(a, w)
            if sels:
                hint = f" (it is canonical; raw: {', '.join(a.names[s.nr] for s in sels)})"
        raise MvxError(f"{a.name} has no syscall {w!r}{hint}") from None
    if nr not in a.names:
        raise MvxError(f"{a.name} has no syscall number {nr}")
    return nr, a.names[nr]


def _canonical_lines(name: str | None) -> list[str]:
    from mvx.core import policy as policymod
    from mvx.isa import arch as archmod

    if name is None:
        out = []
        for n in S.canonical_names():
            spec = S.spec_of(n)
            args = ", ".join(f"{an}: {describe_kind(k)}" for an, k in zip(spec.arg_names, spec.kinds))
            out.append(f"{n}({args}) -> {describe_kind(spec.ret)}" + ("  [generic]" if spec.generic else ""))
        return out
    if name not in S.canonical_names():
        raise MvxError(f"no canonical syscall {name!r}")
    spec = S.spec_of(name)
    out = [spec.signature() + ("  [generic]" if spec.generic else "")]
    for i, (an, k) in enumerate(zip(spec.arg_names, spec.kinds)):
        out.append(f"  {i}: {an}  {describe_kind(k)}")
    out.append(f"  returns {describe_kind(spec.ret)}")
    out.append(f"  traits: {'; '.join(spec.traits.describe()) or '-'}")
    for policy_name in policymod.available():
        policy = policymod.load(policy_name)
        cls = policy.class_of(name) or "not synced"
        if name in policy.in_world:
            cls += f" ({policy.class_of(name, in_world=True)} on the variant's own files, pipes and socketpairs)"
        out.append(f"  policy {policy_name}: {cls}")
    for arch_name in archmod.ARCHES:
        a = archmod.get(arch_name)
        sels = []
        for s in S.raw_selectors(a, name):
            sel = f"{a.names[s.nr]}({s.nr})"
            if s.arg0_equals is not None:
                sel += f"[arg0={s.arg0_equals}]"
            sels.append(sel)
        out.append(f"  {arch_name}: {', '.join(sels) or '-'}")
    return out


def run(args: argparse.Namespace) -> int:
    from mvx.isa import arch as archmod

    if args.canonical:
        lines = _canonical_lines(args.name)
    else:
        if not args.arch:
            raise MvxError("give --arch ARCH (x86_64, i386, aarch64) or --canonical")
        a = archmod.get(args.arch)
        if args.name is not None:
            nr, raw = _lookup(a, args.name)
            lines = _entry_lines(a, nr, raw)
        else:
            lines = []
            for nr, raw in sorted(a.names.items()):
                dm = S.demux_for(a, raw)
                canon = "(demultiplexed)" if dm else S.canonical_of(a, raw)
                lines.append(f"{nr:>4}  {raw:<28} {canon}")
    print("\n".join(lines))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "syscalls", help="show the canonical syscall table and the raw syscalls of an arch",
        description="Show how raw syscalls of an ISA map to mvx's canonical, ISA-neutral syscalls.")
    p.add_argument("--arch", help="x86_64, i386 or aarch64")
    p.add_argument("--canonical", action="store_true", help="list the canonical table (or one entry)")
    p.add_argument("name", nargs="?", help="a raw syscall name or number (with --canonical: a canonical name)")
    p.set_defaults(handler=run)
