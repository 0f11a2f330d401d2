"""How the C part is built, in one place: at install (setup.py's cffi_modules names `ffibuilder`:
a wheel or `pip install` compiles it once, so an installed mvx needs no compiler) and on first
use in a source checkout (mvx/mechanics/native/__init__.py). Read by setuptools as a plain file,
so it imports nothing of mvx."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
# every file the build reads: a change to any makes another build (its digest)
SOURCES = ("mvx_native.h", "mvx_tables.h", "mvx_native.c", "mvx_fast.c", "mvx_protocol.c", "mvx_protocol.h",
           "mvx_tls.c", "mvx_agent.h", "mvx_trace.c")
INSTALLED = "mvx.mechanics.native._mvx_native"  # the module a package install builds


def source_digest() -> str:
    """What the C part is built from (the recipe included). The installed module is built for
    the stable ABI (abi3), so any interpreter of the package's may load it."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for name in SOURCES:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()


def cache_name() -> str:
    """A first-use build's module name: of these sources, for this interpreter."""
    return "_mvx_native_" + hashlib.sha256((source_digest() + sys.version).encode()).hexdigest()[:16]


def cdef() -> str:
    """The header with #define lines turned into cffi constants, plus the build's own digest."""
    text = re.sub(r"/\*.*?\*/", "", (HERE / "mvx_native.h").read_text(), flags=re.DOTALL)
    out = []
    for line in text.splitlines():
        m = re.match(r"#define\s+(\w+)\s+(\d+)\s*$", line)
        if m:
            out.append(f"#define {m.group(1)} {m.group(2)}")
        elif not line.startswith("#"):
            out.append(line)
    out.append("const char *mvx_source_digest(void);")
    return "\n".join(out)


def make_ffi(modname: str) -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(cdef())
    source = (HERE / "mvx_native.c").read_text()
    source += f'\nconst char *mvx_source_digest(void) {{ return "{source_digest()}"; }}\n'
    ffi.set_source(modname, source, include_dirs=[str(HERE)],
                   extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"], define_macros=[("_GNU_SOURCE", "1")])
    return ffi


def ffibuilder() -> cffi.FFI:
    """For setup.py (cffi calls it): the installed module's build."""
    return make_ffi(INSTALLED)
