"""The in-process agent (mvx/mechanics/native/mvx_agent.c, docs/DESIGN.md "The in-process agent"):
a follower's input calls answered inside its own program, from records its monitor publishes in
shared memory, with no trap; in the leader, its pread64 of its own files made through a gate page
its filter lets run, and claimed for its monitor to record. Loaded into every variant by LD_PRELOAD (its
ISA's build, by path), from two memfds every variant gets at fixed fd numbers; its constructor maps
them, closes both fds (the same two synced closes in every variant) and puts LD_PRELOAD back as it
was, so the program sees the fds and the environment it would see natively.

Built on first use, per ISA, with the compilers scripts/setup.sh installs, and cached by the
sources' digest like the native module. On by default in `mvx run`, `mvx leader` and `mvx follower`
(--no-agent turns it off); without a compiler for a variant's ISA, that variant runs without it."""

from __future__ import annotations

import hashlib
import os
import platform
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from mvx.mechanics.native import lib

_NATIVE = Path(__file__).resolve().parent / "native"
SOURCES = ("mvx_agent.c", "mvx_agent.h")
LIBRARY = "libmvxagent.so"
RING_FD, STATUS_FD = 1022, 1023
MFD_CLOEXEC, MFD_ALLOW_SEALING = 0x1, 0x2
PAGE = 4096
# the leader's gate: below 4 GiB for an i386 program, above where a non-PIE i386 program and its heap
# start (0x08048000) and below where PIE programs load (0x56555000 for i386, 0x55... for x86_64)
GATE_LOW, GATE_HIGH = 0x2000_0000, 0x5000_0000


def _compilers() -> dict[str, list[str]]:
    """ISA -> the command that builds for it here (as scripts/build_variants.sh picks them)."""
    if platform.machine() == "x86_64":
        shim = _NATIVE.parents[2] / "build" / "include32"  # (<asm/...> for -m32: build_variants.sh)
        return {"x86_64": ["gcc", "-m64"], "i386": ["gcc", "-m32", *(["-I", str(shim)] if shim.is_dir() else [])],
                "aarch64": ["aarch64-linux-gnu-gcc"]}
    if platform.machine() == "aarch64":
        return {"aarch64": ["gcc"], "x86_64": ["x86_64-linux-gnu-gcc"], "i386": ["i686-linux-gnu-gcc"]}
    return {}


def _digest() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((_NATIVE / name).read_bytes())
    return h.hexdigest()[:16]


def _cache_bases() -> list[Path]:
    return [_NATIVE / "_build" / "agent", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mvx" / "agent"]


def build(isa: str) -> Path | None:
    """The directory holding this ISA's libmvxagent.so (built now if need be), or None when there
    is no compiler for it here."""
    cc = _compilers().get(isa)
    if not cc or not shutil.which(cc[0]):
        return None
    digest = _digest()
    for base in _cache_bases():
        out = base / digest / isa
        if (out / LIBRARY).is_file():
            return out
    for base in _cache_bases():
        out = base / digest / isa
        try:
            out.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=out, suffix=".so", delete=False) as tmp:
                pass
            r = subprocess.run([*cc, "-O2", "-fPIC", "-shared", "-o", tmp.name, str(_NATIVE / "mvx_agent.c")],
                               check=False, capture_output=True, text=True)
            if r.returncode != 0:
                os.unlink(tmp.name)
                return None
            os.replace(tmp.name, out / LIBRARY)  # whole or not at all, for a concurrent run
            return out
        except OSError:
            continue
    return None


def environment(env: dict[str, str], isa: str | None) -> dict[str, str] | None:
    """`env` with the agent of `isa` preloaded (by its path, first, before any LD_PRELOAD of the
    user's, which its constructor puts back as it was: the program sees the environment it would
    see natively); None for a script (its interpreter's ISA is not known here) or without a build."""
    built = build(isa) if isa else None
    if built is None:
        return None
    out = dict(env)
    out["LD_PRELOAD"] = ":".join(filter(None, [str(built / LIBRARY), env.get("LD_PRELOAD")]))
    return out


def memfds() -> tuple[int, int]:
    """The ring and the status page a variant gets (sized here: an agent reading past a file's end
    would fault)."""
    ring = os.memfd_create("mvx-agent-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING)
    status = os.memfd_create("mvx-agent-status", MFD_CLOEXEC)
    os.ftruncate(ring, lib.mvx_agent_size(0))
    os.ftruncate(status, lib.mvx_agent_size(1))
    return ring, status


def gate_address() -> int:
    """Where a leader's agent maps its gate page this run (mvx_agent.h): a random page below 4 GiB
    (an i386 program's too), away from where programs and libraries load; the leader's filter lets
    pread64 made from there run untrapped (mvx.mechanics.filters.gate_prefix)."""
    return GATE_LOW + secrets.randbelow((GATE_HIGH - GATE_LOW) // PAGE) * PAGE


def attach(fast, ring: int, status: int, publish: bool, gate: int = 0) -> None:
    """Map the two into the monitor (a follower publishes there, a leader follows its agent's
    claims through `gate`) and seal the ring, then close them here (the variant has its own copies,
    the monitor its mappings)."""
    try:
        r = lib.mvx_fast_agent_attach(fast, ring, status, int(publish), gate)
        if r < 0:
            raise OSError(-r, os.strerror(-r))
    finally:
        os.close(ring)
        os.close(status)
