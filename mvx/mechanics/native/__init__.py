"""The compiled hot path. An installed mvx (a wheel, `pip install .`) has it built at install
(mvx/mechanics/native/ffibuild.py, setup.py), so it needs no compiler. A source checkout builds it
with cffi on first use and caches it by the sources' digest (in mvx/mechanics/native/_build, or
~/.cache/mvx when the package is read-only). Either build is used only if it was made from the
sources beside this file: an edited source rebuilds, a stale build is never loaded."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import tempfile
from pathlib import Path

from mvx import MvxError
from mvx.mechanics.native import ffibuild

_HERE = Path(__file__).resolve().parent


def _build_dirs() -> list[Path]:
    return [_HERE / "_build", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mvx"]


def _load():
    digest = ffibuild.source_digest()
    try:
        installed = importlib.import_module(ffibuild.INSTALLED)
    except ImportError:
        installed = None
    if installed is not None and installed.ffi.string(installed.lib.mvx_source_digest()).decode() == digest:
        return installed, "installed"
    modname = ffibuild.cache_name()
    # Only a build for this interpreter and machine: an x86_64 and an aarch64 build of the same
    # source may sit side by side (the repo is shared with the arm64 test node).
    for base in _build_dirs():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            found = base / (modname + suffix)
            if found.is_file():
                return _import(modname, found), f"built on first use in {base}"
    last_error: Exception | None = None
    for base in _build_dirs():
        try:
            base.mkdir(parents=True, exist_ok=True)
            return _compile(modname, base), f"built on first use in {base}"
        except OSError as exc:
            last_error = exc
    raise MvxError(f"cannot build the native module: {last_error}")


def _compile(modname: str, base: Path):
    ffi = ffibuild.make_ffi(modname)
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


_native, _how = _load()
ffi = _native.ffi
lib = _native.lib


def build_info() -> str:
    """Which build of the C part this process runs (`mvx --version`)."""
    return f"C part {ffi.string(lib.mvx_source_digest()).decode()[:12]}, {_how}"
