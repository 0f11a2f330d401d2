"""mvx/mechanics/native/mvx_tables.h agrees with the Python tables: a small C program compiled against it
prints what it looks up, and every line is checked against mvx.isa.arch / mvx.isa.syscalls."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mvx.isa import arch as archmod
from mvx.isa import syscalls as S

NATIVE = Path(__file__).resolve().parent.parent / "mvx" / "mechanics" / "native"
ISAS = ("x86_64", "i386", "aarch64")

PROGRAM = r"""
#include <stdio.h>
#include "mvx_tables.h"

int main(void) {
    for (int i = 0; i < MVX_NISA; i++) {
        const struct mvx_isa *isa = &mvx_isas[i];
        printf("isa %s 0x%08x %d\n", isa->name, isa->audit_arch, isa->word_size);
        for (int nr = 0; nr < isa->nr_count; nr++) {
            int c = mvx_call_of(i, nr);
            if (c != MVX_CALL_NONE)
                printf("nr %s %d %s\n", isa->name, nr, c == MVX_CALL_DEMUX ? "DEMUX" : mvx_call_names[c]);
        }
        for (int l = 0; l < MVX_NLAYOUTS; l++) {
            const struct mvx_layout *lay = &isa->layouts[l];
            if (lay->size < 0)
                continue;
            printf("layout %s %s %d\n", isa->name, mvx_layout_names[l], lay->size);
            for (int f = 0; f < lay->nfields; f++)
                printf("field %s %s %s %d %d %d\n", isa->name, mvx_layout_names[l], lay->fields[f].name,
                       lay->fields[f].offset, lay->fields[f].size, lay->fields[f].is_signed);
        }
        const struct mvx_regs *r = &isa->regs;
        printf("regs %s %d %d %d %d %d", isa->name, r->size, r->nr, r->ret, r->ip, r->sp);
        for (int a = 0; a < 6; a++)
            printf(" %d", r->args[a]);
        printf("\n");
        const struct mvx_arg *fl = &mvx_call_specs[MVX_CALL_openat].args[2];
        int o_dir = mvx_flag_index(fl->flags, "O_DIRECTORY");
        const struct mvx_flag *e = &mvx_flag_families[fl->flags].flags[i][o_dir];
        printf("flag %s O_DIRECTORY 0x%llx 0x%llx\n", isa->name, (unsigned long long)e->value,
               (unsigned long long)e->mask);
        const struct mvx_field *data = mvx_field(i, MVX_LAYOUT_epoll_event, "data");
        printf("epoll_data %s %d\n", isa->name, data->offset);
    }
    const struct mvx_call_spec *rd = &mvx_call_specs[MVX_CALL_read];
    printf("spec read %d %d %d %d %d %d\n", rd->nargs, rd->ret.kind == MVX_K_INT, rd->args[0].kind == MVX_K_FD,
           rd->args[1].kind == MVX_K_OUTBUF, rd->args[1].arg, rd->args[2].kind == MVX_K_UINT);
    printf("ncalls %d\n", MVX_NCALLS);
    for (int c = 0; c < MVX_NCALLS; c++) {
        const struct mvx_call_traits *t = &mvx_call_traits[c];
        printf("traits %s %d %d %d %d %d %d %d %d %d %d %d %d\n", mvx_call_names[c], t->flags, t->compared,
               t->word_sized, t->sends, t->sends_file, t->changes_fs_arg, t->unused_cmd, t->unused_arg,
               t->uncompared_fields_arg, t->perform != 0, t->shadow != 0, t->view_as != 0);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.fail("gcc missing: run scripts/setup.sh")
    tmp = tmp_path_factory.mktemp("ctables")
    src, exe = tmp / "probe.c", tmp / "probe"
    src.write_text(PROGRAM)
    r = subprocess.run(["gcc", "-m64", "-Wall", "-Wextra", "-Werror", "-I", str(NATIVE), "-o", str(exe),
                        str(src)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def _expected_nrs(a) -> list[str]:
    out = []
    for nr, raw in sorted(a.names.items()):
        call = "DEMUX" if S.demux_for(a, raw) else S.canonical_of(a, raw)
        out.append(f"nr {a.name} {nr} {call}")
    return out


def test_the_documented_examples(lines):
    assert "nr x86_64 0 read" in lines
    assert "nr i386 3 read" in lines
    assert "nr aarch64 63 read" in lines
    assert "nr i386 102 DEMUX" in lines  # socketcall
    for name in ISAS:
        a = archmod.get(name)
        assert f"flag {name} O_DIRECTORY 0x{a.const('O_DIRECTORY'):x} 0x{a.const('O_DIRECTORY'):x}" in lines
        assert f"epoll_data {name} {a.layout('epoll_event').field('data').offset}" in lines
    assert "epoll_data i386 4" in lines and "epoll_data x86_64 4" in lines and "epoll_data aarch64 8" in lines
    assert "spec read 3 1 1 1 2 1" in lines


@pytest.mark.parametrize("name", ISAS)
def test_every_syscall_number_maps_as_in_python(lines, name):
    a = archmod.get(name)
    assert f"isa {name} 0x{a.audit_arch:08x} {a.word_size}" in lines
    assert [ln for ln in lines if ln.startswith(f"nr {name} ")] == _expected_nrs(a)


@pytest.mark.parametrize("name", ISAS)
def test_every_layout_matches_python(lines, name):
    a = archmod.get(name)
    want = []
    for lname in sorted(a.layouts):
        lay = a.layouts[lname]
        want.append(f"layout {name} {lname} {lay.size}")
        for f, fl in sorted(lay.fields.items(), key=lambda kv: (kv[1].offset, kv[0])):
            want.append(f"field {name} {lname} {f} {fl.offset} {fl.size} {int(fl.signed)}")
    assert [ln for ln in lines if ln.startswith((f"layout {name} ", f"field {name} "))] == want


@pytest.mark.parametrize("name", ISAS)
def test_register_offsets_match_python(lines, name):
    a = archmod.get(name)
    ro = a.reg_offsets
    want = (f"regs {name} {a.regset_size} {ro[a.nr_reg]} {ro[a.ret_reg]} {ro[a.ip_reg]} {ro[a.sp_reg]} "
            + " ".join(str(ro[r]) for r in a.arg_regs))
    assert want in lines


def test_canonical_ids_cover_every_canonical_name(lines):
    assert f"ncalls {len(S.canonical_names())}" in lines


def test_traits_agree(lines):
    """Every canonical call's traits in C are its row's Traits in mvx/isa/syscalls.py."""
    got = {ln.split()[1]: ln.split()[2:] for ln in lines if ln.startswith("traits ")}
    assert set(got) == set(S.canonical_names())
    bools = ("clock_read", "blocks", "ends", "fd_table_only", "follower_runs", "ret_not_compared", "shuts_down",
             "clock_result")
    for name in S.canonical_names():
        spec = S.spec_of(name)
        t = spec.traits

        def index(arg, spec=spec):
            return spec.arg_names.index(arg) if arg is not None else -1

        flags = sum(1 << i for i, b in enumerate(bools) if getattr(t, b))
        compared = sum(1 << i for i, a in enumerate(spec.arg_names) if t.compared_only is None or a in t.compared_only)
        unused = t.unused_for or (None, None)
        want = [flags, compared, index(t.word_sized), index(t.sends), index(t.sends_file),
                index(t.changes_fs_when[0] if t.changes_fs_when else None), index(unused[0]), index(unused[1]),
                index(t.fields_not_compared[0][0]) if t.fields_not_compared else -1,
                int(t.perform is not None), int(t.shadow is not None), int(t.view_as is not None)]
        assert [int(v) for v in got[name]] == want, name
    assert got["close"][0] != "0" and got["read"][9] == "1"  # the table is not all zeros
