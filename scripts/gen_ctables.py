#!/usr/bin/env python3
"""Generate mvx/mechanics/native/mvx_tables.h: the Python tables (mvx/isa/archdata via mvx.isa.arch, mvx.isa.syscalls,
mvx.isa.canonical's flag plans) as C data for the data plane, so both read one source.

Per ISA (x86_64, i386, aarch64): audit arch, word size, syscall number -> canonical call id,
struct layouts, flag-translation tables and register offsets in the ptrace regset. Per canonical
call (ids sorted by name, the same for every ISA): its name, argument kinds and return kind.

    python3 scripts/gen_ctables.py            # rewrite mvx/mechanics/native/mvx_tables.h
    python3 scripts/gen_ctables.py --check    # exit 1 if the committed header is stale
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import gen_archdata

from mvx.isa import arch as archmod
from mvx.isa import canonical as C
from mvx.isa import syscalls as S

OUT = ROOT / "mvx" / "mechanics" / "native" / "mvx_tables.h"
REGEN = "just regen"
ISAS = tuple(gen_archdata.ARCHES)  # x86_64, i386, aarch64: the order of MVX_ISA_*
# The compiler's predefined macro for each ISA, to pick the host's entries in the data plane.
CPP_MACRO = {"x86_64": "__x86_64__", "i386": "__i386__", "aarch64": "__aarch64__"}

# Argument kinds: every concrete Kind of mvx.isa.syscalls, by class name.
KINDS = sorted(c.__name__ for c in vars(S).values()
               if isinstance(c, type) and issubclass(c, S.Kind) and c is not S.Kind
               and not c.__name__.startswith("_"))
WIDTH = {"int": 4, "long": 0, "s64": 8, "u64": 8}  # bytes; 0: the ISA's word


def cid(name: str) -> str:
    return name.upper()


def kind_code(k: S.Kind) -> str:
    return "MVX_K_" + cid(type(k).__name__)


def walk_kinds(k: S.Kind):
    yield k
    if isinstance(k, S.Switch):
        for sub in k.all_kinds():
            yield from walk_kinds(sub)


def nr_write_regsets() -> dict[str, int]:
    """Values of the declared nr_write_regset names (NT_ARM_SYSTEM_CALL), from <elf.h>."""
    names = sorted({a.nr_write_regset for a in archmod.ARCHES.values() if a.nr_write_regset})
    with tempfile.TemporaryDirectory(prefix="mvx-ctables-") as tmp:
        t = gen_archdata.Target("x86_64", Path(tmp))
        values = t.evaluate("#include <elf.h>\n", names)
    missing = set(names) - set(values)
    if missing:
        raise gen_archdata.GenError(f"<elf.h> lacks {' '.join(sorted(missing))}")
    return values


def arg_entry(k: S.Kind, layouts: dict[str, int], families: dict) -> str:
    a = {"kind": kind_code(k), "dir": f"MVX_DIR_{k.direction.upper()}", "arg": -1, "len_ptr_arg": -1,
         "from_ret": 0, "width": 0, "fixed": -1, "layout": -1, "flags": -1,
         "compared": int(bool(k.compared))}
    for f in ("len_arg", "count_arg", "size_arg", "nfds_arg", "on"):
        v = getattr(k, f, None)
        if isinstance(v, int) and not isinstance(v, bool):
            a["arg"] = v
    if getattr(k, "len_ptr_arg", None) is not None:
        a["len_ptr_arg"] = k.len_ptr_arg
    if getattr(k, "len_from_ret", False) or getattr(k, "count_from_ret", False):
        a["from_ret"] = 1
    if isinstance(k, S.OutBuf) and (k.len_arg is not None or k.len_ptr_arg is not None):
        a["from_ret"] = int(k.len_from_ret)
    if isinstance(getattr(k, "size", None), str):
        a["width"] = WIDTH[k.size]
    elif isinstance(k, S.Uid):
        a["width"] = k.bits // 8
    for f in ("size", "count"):
        v = getattr(k, f, None)
        if isinstance(v, int) and not isinstance(v, bool):
            a["fixed"] = v
    if getattr(k, "layout", None):
        a["layout"] = layouts[k.layout]
    if isinstance(k, S.Flags):
        a["flags"] = families[k][0]
    return ("{" + ", ".join(f".{n} = {v}" for n, v in a.items()) + "}")


# Traits (mvx.isa.syscalls.Traits) as C: booleans in one bitmask, argument names as indexes, names
# of a kind (how a call is performed, its fd-table effect, its view) as enum codes.
BOOL_TRAITS = ("clock_read", "blocks", "ends", "fd_table_only", "follower_runs", "ret_not_compared", "shuts_down",
               "clock_result")
NAMED_TRAITS = ("perform", "shadow", "view_as")


def call_traits(canon: list[str], specs: dict) -> list[str]:
    o = ["/* ---- per canonical call: its traits (mvx.isa.syscalls.Traits) ---- */"]
    o += [f"#define MVX_T_{t.upper()} (1u << {i})" for i, t in enumerate(BOOL_TRAITS)]
    codes = {}
    for trait in NAMED_TRAITS:
        values = sorted({getattr(specs[n].traits, trait) for n in canon} - {None})
        codes[trait] = {v: i + 1 for i, v in enumerate(values)}
        o.append(f"enum mvx_{trait} {{ MVX_{trait.upper()}_NONE = 0, "
                 + ", ".join(f"MVX_{trait.upper()}_{cid(v)} = {c}" for v, c in codes[trait].items()) + " };")
    o += [
        "struct mvx_call_traits {",
        "    uint16_t flags;          /* MVX_T_* */",
        "    uint8_t compared;        /* bit i: argument i is compared (compared_only) */",
        "    int8_t word_sized;       /* the one-word argument, -1 */",
        "    int8_t sends;            /* the argument holding the bytes it sends, -1 */",
        "    int8_t sends_file;       /* the argument naming the file it sends, -1 */",
        "    int8_t changes_fs_arg;   /* the flags argument that can make it change the file system, -1 */",
        "    int8_t unused_cmd;       /* unused_for: the command argument, -1 */",
        "    int8_t unused_arg;       /* unused_for: the argument those commands do not read, -1 */",
        "    int8_t uncompared_fields_arg; /* the struct argument with fields never compared, -1 */",
        "    uint8_t perform;         /* enum mvx_perform */",
        "    uint8_t shadow;          /* enum mvx_shadow */",
        "    uint8_t view_as;         /* enum mvx_view_as */",
        "};",
        "MVX_TABLE struct mvx_call_traits mvx_call_traits[MVX_NCALLS] = {",
    ]
    for n in canon:
        sp, t = specs[n], specs[n].traits
        names = sp.arg_names

        def index(name, names=names):
            return names.index(name) if name is not None else -1

        flags = " | ".join(f"MVX_T_{b.upper()}" for b in BOOL_TRAITS if getattr(t, b)) or "0"
        compared = sum(1 << i for i, a in enumerate(names) if t.compared_only is None or a in t.compared_only)
        fields = index(t.fields_not_compared[0][0]) if t.fields_not_compared else -1
        unused = t.unused_for or (None, None, ())
        o.append(f"    [MVX_CALL_{n}] = {{{flags}, 0x{compared:02x}, {index(t.word_sized)}, {index(t.sends)}, {index(t.sends_file)}, "
                 f"{index(t.changes_fs_when[0] if t.changes_fs_when else None)}, {index(unused[0])}, "
                 f"{index(unused[1])}, {fields}, "
                 + ", ".join(str(codes[tr].get(getattr(t, tr), 0)) for tr in NAMED_TRAITS) + "},")
    return o + ["};", ""]


def render() -> str:
    arches = [archmod.get(n) for n in ISAS]
    canon = S.canonical_names()
    layout_names = sorted({n for a in arches for n in a.layouts})
    layout_id = {n: i for i, n in enumerate(layout_names)}
    specs = {n: S.spec_of(n) for n in canon}

    # flag families used by the specs, ids in sorted order of their declaration
    uses: dict = {}
    for n in canon:
        sp = specs[n]
        for an, k in zip(sp.arg_names, sp.kinds):
            for sub in walk_kinds(k):
                if isinstance(sub, S.Flags):
                    uses.setdefault(sub, f"{n}.{an}")
    fams = sorted(uses, key=repr)
    families = {f: (i, uses[f]) for i, f in enumerate(fams)}

    o = [
        "/* Generated by scripts/gen_ctables.py from mvx/isa/archdata/<arch>.py (via mvx.isa.arch),",
        " * mvx/isa/syscalls.py and mvx/isa/canonical.py; do not edit: run `just regen`. */",
        "#ifndef MVX_TABLES_H",
        "#define MVX_TABLES_H",
        "",
        "#include <stdint.h>",
        "#include <string.h>",
        "",
        "#define MVX_TABLE static const __attribute__((unused))",
        "",
        "/* ---- ISAs ---- */",
    ]
    o += [f"#define MVX_ISA_{cid(n)} {i}" for i, n in enumerate(ISAS)]
    o += [f"#define MVX_NISA {len(ISAS)}", ""]
    o += ["/* The host ISA: the monitor reads its tracees through the host's regset. */"]
    for i, n in enumerate(ISAS):
        o.append(f"#{'if' if i == 0 else 'elif'} defined({CPP_MACRO[n]})")
        o.append(f"#define MVX_HOST_ISA MVX_ISA_{cid(n)}")
        o.append(f"#define MVX_HOST_PREFIX_(x) MVX_{cid(n)}_##x")
        compat = [c.name for c in arches if c.name != n and n in c.native_on
                  and c.regset == archmod.get(n).regset]
        o.append(f"#define MVX_HOST_COMPAT_ISA MVX_ISA_{cid(compat[0] if compat else n)}"
                 "  /* ISA of compat tracees seen through the host regset */")
    o += ["#endif", "#define MVX_HOST(x) MVX_HOST_PREFIX_(x)", ""]

    # ---- per-ISA scalar facts (macros: usable in array sizes and #if) ----
    nt = nr_write_regsets()
    o.append("/* ---- per-ISA scalars; MVX_HOST(REGSET_SIZE) etc. pick the host's ---- */")
    for a in arches:
        p = f"MVX_{cid(a.name)}_"
        ro = a.reg_offsets
        o += [
            f"#define {p}AUDIT_ARCH 0x{a.audit_arch:08X}u",
            f"#define {p}WORD_SIZE {a.word_size}",
            f"#define {p}NR_COUNT {max(a.names) + 1}",
            f"#define {p}REGSET_SIZE {a.regset_size}",
            f"#define {p}REG_NR {ro[a.nr_reg]}  /* {a.nr_reg} */",
            f"#define {p}REG_RET {ro[a.ret_reg]}  /* {a.ret_reg} */",
            f"#define {p}REG_IP {ro[a.ip_reg]}  /* {a.ip_reg} */",
            f"#define {p}REG_SP {ro[a.sp_reg]}  /* {a.sp_reg} */",
        ]
        o += [f"#define {p}REG_ARG{i} {ro[r]}  /* {r} */" for i, r in enumerate(a.arg_regs)]
        regset = a.nr_write_regset
        o.append(f"#define {p}NR_WRITE_REGSET {hex(nt[regset]) if regset else 0}"
                 f"  /* {regset or 'none: the number is written through REG_NR'} */")
        o.append(f"#define {p}SYSCALL_INSN_LEN {a.syscall_insn_len}")
        for n, v in sorted(a.kernel_consts.items()):
            o.append(f"#define {p}{n} {v}")
        o.append("")

    # ---- kinds ----
    o.append("/* ---- argument kinds (mvx.isa.syscalls Kind classes) ---- */")
    o.append("enum mvx_kind {")
    o += [f"    MVX_K_{cid(k)} = {i}," for i, k in enumerate(KINDS)]
    o += ["};", "enum mvx_dir { MVX_DIR_IN = 0, MVX_DIR_OUT = 1, MVX_DIR_INOUT = 2 };", ""]

    # ---- canonical calls ----
    o += ["/* ---- canonical calls: ids sorted by name, the same on every ISA ---- */",
          "#define MVX_CALL_NONE (-1)   /* no syscall of this number */",
          "#define MVX_CALL_DEMUX (-2)  /* a multiplexer (i386 socketcall, ipc...): demultiplexed in code */",
          f"#define MVX_NCALLS {len(canon)}", "enum mvx_call {"]
    o += [f"    MVX_CALL_{n} = {i}," for i, n in enumerate(canon)]
    o += ["};", "MVX_TABLE char *const mvx_call_names[MVX_NCALLS] = {"]
    o += [f'    "{n}",' for n in canon]
    o += ["};", ""]
    o += [
        "struct mvx_arg {",
        "    uint8_t kind;          /* enum mvx_kind */",
        "    uint8_t dir;           /* enum mvx_dir */",
        "    int8_t arg;            /* argument giving its length/count/size (Switch: the selector), -1 */",
        "    int8_t len_ptr_arg;    /* argument pointing to its length, -1 */",
        "    uint8_t from_ret;      /* length/count is the return value */",
        "    uint8_t width;         /* integer bytes, 0: the ISA's word */",
        "    int16_t fixed;         /* fixed size/count, -1 */",
        "    int16_t layout;        /* MVX_LAYOUT_* id, -1 */",
        "    int16_t flags;         /* flag family id (mvx_flag_families), -1 */",
        "    uint8_t compared;      /* compared across variants */",
        "};",
        "struct mvx_call_spec {",
        "    uint8_t nargs;",
        "    uint8_t generic;       /* no declared spec: six raw words */",
        "    struct mvx_arg ret;",
        "    struct mvx_arg args[6];",
        "};",
        "MVX_TABLE struct mvx_call_spec mvx_call_specs[MVX_NCALLS] = {",
    ]
    for n in canon:
        sp = specs[n]
        args = ", ".join(arg_entry(k, layout_id, families) for k in sp.kinds)
        o.append(f"    [MVX_CALL_{n}] = {{{sp.nargs}, {int(sp.generic)}, "
                 f"{arg_entry(sp.ret, layout_id, families)}, {{{args}}}}},")
    o += ["};", ""]
    o += call_traits(canon, specs)

    # ---- syscall numbers ----
    o.append("/* ---- per ISA: syscall number -> canonical call id ---- */")
    for a in arches:
        o.append(f"MVX_TABLE int16_t mvx_nr_calls_{a.name}[MVX_{cid(a.name)}_NR_COUNT] = {{")
        for nr in range(max(a.names) + 1):
            raw = a.names.get(nr)
            if raw is None:
                o.append(f"    [{nr}] = MVX_CALL_NONE,")
                continue
            if S.demux_for(a, raw):
                o.append(f"    [{nr}] = MVX_CALL_DEMUX,  /* {raw} */")
            else:
                c = S.canonical_of(a, raw)
                o.append(f"    [{nr}] = MVX_CALL_{c},{'' if c == raw else f'  /* {raw} */'}")
        o += ["};"]
    o.append("")

    # ---- layouts ----
    o += ["/* ---- struct layouts (kernel ABI of each ISA) ---- */",
          f"#define MVX_NLAYOUTS {len(layout_names)}", "enum mvx_layout_id {"]
    o += [f"    MVX_LAYOUT_{n} = {i}," for i, n in enumerate(layout_names)]
    o += ["};", "MVX_TABLE char *const mvx_layout_names[MVX_NLAYOUTS] = {"]
    o += [f'    "{n}",' for n in layout_names]
    o += ["};",
          "struct mvx_field { const char *name; uint16_t offset; uint16_t size; uint8_t is_signed; };",
          "/* size -1: not on this ISA */",
          "struct mvx_layout { int32_t size; uint16_t nfields; const struct mvx_field *fields; };", ""]
    for a in arches:
        for n in layout_names:
            lay = a.layouts.get(n)
            if lay is None:
                continue
            o.append(f"MVX_TABLE struct mvx_field mvx_fields_{a.name}_{n}[] = {{")
            for f, fl in sorted(lay.fields.items(), key=lambda kv: (kv[1].offset, kv[0])):
                o.append(f'    {{"{f}", {fl.offset}, {fl.size}, {int(fl.signed)}}},')
            o.append("};")
        o.append(f"MVX_TABLE struct mvx_layout mvx_layouts_{a.name}[MVX_NLAYOUTS] = {{")
        for n in layout_names:
            lay = a.layouts.get(n)
            if lay is None:
                o.append(f"    [MVX_LAYOUT_{n}] = {{-1, 0, 0}},")
            else:
                o.append(f"    [MVX_LAYOUT_{n}] = {{{lay.size}, {len(lay.fields)}, mvx_fields_{a.name}_{n}}},")
        o += ["};", ""]

    # ---- flag families ----
    o += ["/* ---- flag families of the specs: per ISA, the value of each canonical flag name ----",
          " * A name's entry: value and mask (mask == value for a flag bit, the field mask for a member",
          " * of an enumerated field such as O_ACCMODE; mask 0: not on this ISA). Decode by trying",
          " * entries with more bits first; `drop` bits are removed silently (O_LARGEFILE). */",
          f"#define MVX_NFLAG_FAMILIES {len(fams)}",
          "struct mvx_flag { uint64_t value, mask; };",
          "struct mvx_flag_family {",
          "    const char *label;     /* the first spec argument using it */",
          "    uint16_t nnames;",
          "    const char *const *names;  /* sorted */",
          "    const struct mvx_flag *flags[MVX_NISA];",
          "    uint64_t drop[MVX_NISA];",
          "    uint64_t signal_mask;",
          "};", ""]
    entries = []
    for fam in fams:
        i, label = families[fam]
        plans = {a.name: C._flag_plan(a.name, fam) for a in arches}
        per: dict[str, dict[str, tuple[int, int]]] = {}
        for an, (fields, _drop, bits) in plans.items():
            d = per.setdefault(an, {})
            for mask, vals in fields:
                for n, v in vals:
                    d[n] = (v, mask)
            for n, v in bits:
                d.setdefault(n, (v, v))
        names = sorted({n for d in per.values() for n in d})
        o.append(f"/* {i}: {label}: {fam.family if isinstance(fam.family, str) else ' '.join(fam.family)} */")
        o.append(f"MVX_TABLE char *const mvx_flag_names_{i}[] = {{"
                 + (", ".join(f'"{n}"' for n in names) or "0") + "};")
        for an in ISAS:
            vals = ", ".join("{{0x{:x}, 0x{:x}}}".format(*per[an].get(n, (0, 0))) for n in names)
            o.append(f"MVX_TABLE struct mvx_flag mvx_flags_{i}_{an}[] = {{{vals or '{0, 0}'}}};")
        drops = ", ".join(f"0x{plans[an][1]:x}" for an in ISAS)
        flags = ", ".join(f"mvx_flags_{i}_{an}" for an in ISAS)
        entries.append(f'    {{"{label}", {len(names)}, mvx_flag_names_{i}, {{{flags}}}, {{{drops}}}, '
                       f"0x{fam.signal_mask:x}}},")
    o.append("MVX_TABLE struct mvx_flag_family mvx_flag_families[MVX_NFLAG_FAMILIES] = {")
    o += entries + ["};", ""]

    # ---- ISAs ----
    o += ["/* ---- per ISA ---- */",
          "struct mvx_regs {",
          "    int16_t size, nr, ret, ip, sp, args[6];  /* byte offsets in the ptrace regset */",
          "    uint32_t nr_write_regset;  /* 0: the number is written through `nr` */",
          "    uint8_t syscall_insn_len;",
          "};",
          "struct mvx_isa {",
          "    const char *name;",
          "    uint32_t audit_arch;",
          "    uint8_t word_size;",
          "    uint16_t nr_count;",
          "    const int16_t *nr_calls;",
          "    const struct mvx_layout *layouts;",
          "    struct mvx_regs regs;",
          "};",
          "MVX_TABLE struct mvx_isa mvx_isas[MVX_NISA] = {"]
    for a in arches:
        p = f"MVX_{cid(a.name)}_"
        o.append(f'    [MVX_ISA_{cid(a.name)}] = {{"{a.name}", {p}AUDIT_ARCH, {p}WORD_SIZE, {p}NR_COUNT, '
                 f"mvx_nr_calls_{a.name}, mvx_layouts_{a.name},")
        o.append(f"        {{{p}REGSET_SIZE, {p}REG_NR, {p}REG_RET, {p}REG_IP, {p}REG_SP, "
                 f"{{{', '.join(f'{p}REG_ARG{i}' for i in range(6))}}}, "
                 f"{p}NR_WRITE_REGSET, {p}SYSCALL_INSN_LEN}}}},")
    o += ["};", ""]

    # ---- lookups ----
    o += [
        "/* ---- lookups ---- */",
        "static inline int mvx_isa_of_audit(uint32_t audit) {",
        "    for (int i = 0; i < MVX_NISA; i++)",
        "        if (mvx_isas[i].audit_arch == audit)",
        "            return i;",
        "    return -1;",
        "}",
        "/* canonical call id of syscall `nr` of ISA `isa`: MVX_CALL_NONE, MVX_CALL_DEMUX or an id */",
        "static inline int mvx_call_of(int isa, long long nr) {",
        "    if (nr < 0 || nr >= mvx_isas[isa].nr_count)",
        "        return MVX_CALL_NONE;",
        "    return mvx_isas[isa].nr_calls[nr];",
        "}",
        "static inline const struct mvx_field *mvx_field(int isa, int layout, const char *name) {",
        "    const struct mvx_layout *l = &mvx_isas[isa].layouts[layout];",
        "    for (int i = 0; i < l->nfields; i++)",
        "        if (strcmp(l->fields[i].name, name) == 0)",
        "            return &l->fields[i];",
        "    return 0;",
        "}",
        "static inline int mvx_flag_index(int family, const char *name) {",
        "    const struct mvx_flag_family *f = &mvx_flag_families[family];",
        "    for (int i = 0; i < f->nnames; i++)",
        "        if (strcmp(f->names[i], name) == 0)",
        "            return i;",
        "    return -1;",
        "}",
        "",
        "#endif /* MVX_TABLES_H */",
        "",
    ]
    return "\n".join(o)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if mvx/mechanics/native/mvx_tables.h is stale")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    try:
        text = render()
    except gen_archdata.GenError as e:
        print(f"gen_ctables: {e}", file=sys.stderr)
        return 2
    rel = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"gen_ctables: {rel} out of date; run: {REGEN}", file=sys.stderr)
            return 1
        print(f"gen_ctables: {rel} is up to date")
        return 0
    args.out.write_text(text)
    print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
