"""The compiled hot path. The C source beside this file is built with cffi on first use and cached
by its hash (in mvx/mechanics/native/_build, or ~/.cache/mvx when the package is read-only), so a fresh
checkout needs only a C compiler, never a separate build step."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path

from mvx import MvxError

_HERE = Path(__file__).resolve().parent
_SOURCES = ("mvx_native.h", "mvx_tables.h", "mvx_native.c", "mvx_fast.c", "mvx_protocol.c", "mvx_protocol.h", "mvx_tls.c")  # all hashed: a change rebuilds


def _cdef() -> str:
    """The header with #define lines turned into cffi constants."""
    text = (_HERE / "mvx_native.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    out = []
    for line in text.splitlines():
        m = re.match(r"#define\s+(\w+)\s+(\d+)\s*$", line)
        if m:
            out.append(f"#define {m.group(1)} {m.group(2)}")
        elif not line.startswith("#"):
            out.append(line)
    return "\n".join(out)


def _build_dirs() -> list[Path]:
    return [_HERE / "_build", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mvx"]


def _load():
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((_HERE / name).read_bytes())
    digest.update(sys.version.encode())
    modname = "_mvx_native_" + digest.hexdigest()[:16]
    # Only a build for this interpreter and machine: an x86_64 and an aarch64 build of the same
    # source may sit side by side (the repo is shared with the arm64 test node).
    for base in _build_dirs():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            found = base / (modname + suffix)
            if found.is_file():
                return _import(modname, found)
    last_error: Exception | None = None
    for base in _build_dirs():
        try:
            base.mkdir(parents=True, exist_ok=True)
            return _compile(modname, base)
        except OSError as exc:
            last_error = exc
    raise MvxError(f"cannot build the native module: {last_error}")


def _compile(modname: str, base: Path):
    import cffi  # only needed when building

    ffi = cffi.FFI()
    ffi.cdef(_cdef())
    ffi.set_source(
        modname,
        (_HERE / "mvx_native.c").read_text(),
        include_dirs=[str(_HERE)],
        extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
        define_macros=[("_GNU_SOURCE", "1")],
    )
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        try:
            so = ffi.compile(tmpdir=tmp, verbose=False)
        except Exception as exc:  # noqa: BLE001 - cffi wraps compiler failures in several types
            raise MvxError(f"cannot compile the native module (is gcc installed?): {exc}") from None
        target = base / Path(so).name
        os.replace(so, target)
    return _import(modname, target)


def _import(modname: str, path: Path):
    loader = importlib.machinery.ExtensionFileLoader(modname, str(path))
    spec = importlib.util.spec_from_file_location(modname, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


_native = _load()
ffi = _native.ffi
lib = _native.lib
