"""Debian's lighttpd 1.4.69 as mvx variants: a site (document root and configuration) made in a
directory, and each ISA's command line (its own module directory, the same configuration).

scripts/fetch_lighttpd.sh unpacks the three Debian builds under build/variants/lighttpd/<debarch>;
the demo and the tests use this module, and so can a user:

    python3 -m mvx run --leader "$(python3 -m mvx.demo.lighttpd argv x86_64)" \\
        --follower "$(python3 -m mvx.demo.lighttpd argv i386)" -- -D -f SITE/lighttpd.conf

Modules with libraries of their own (mod_deflate: zlib, brotli, zstd, libdeflate) find the i386
and arm64 ones in the ISA's tree through LD_LIBRARY_PATH (`env()`; `python3 -m mvx.demo.lighttpd
libpath` prints its value):

    LD_LIBRARY_PATH="$(python3 -m mvx.demo.lighttpd libpath)" python3 -m mvx run ...
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from mvx import MvxError

ROOT = Path(__file__).resolve().parents[2]
BUILDS = ROOT / "build" / "variants" / "lighttpd"
DEBARCH = {"x86_64": "amd64", "i386": "i386", "aarch64": "arm64"}

CONFIG = """\
# lighttpd for mvx variants (Debian lighttpd 1.4.69, any ISA); written by mvx.demo.lighttpd
server.document-root = "{docroot}"
server.port          = {port}
server.bind          = "{bind}"
server.errorlog      = "{tmp}/error.log"
server.upload-dirs   = ( "{tmp}" )
server.event-handler = "linux-sysepoll"
server.modules = ( {modules} )
index-file.names         = ( "index.html" )
# ETags from size and mtime only: an inode number is not the same on another node's copy
etag.use-inode           = "disable"
mimetype.assign = ( ".html" => "text/html", ".txt" => "text/plain", "" => "application/octet-stream" )
{extra}"""
# the site's modules and their settings (the tests' odd cases: listings, denied files)
SITE_MODULES = ("mod_access", "mod_indexfile", "mod_dirlisting", "mod_staticfile")
SITE_EXTRA = """\
dir-listing.activate     = "enable"
dir-listing.auto-layout  = "disable"
url.access-deny          = ( ".deny" )
"""

INDEX = (b"<!DOCTYPE html>\n<html><head><title>mvx</title></head>\n<body><h1>Served by every variant</h1>\n"
         b"<p>Each byte of this page was compared across ISAs before it left the leader.</p></body></html>\n")


def _lines(n: int) -> bytes:
    return b"".join(b"%08d mvx docroot data abcdefghijklmnopqrstuvwxyz 0123456789\n" % i for i in range(n))


# path -> content: small files go out by writev, large ones by sendfile
FILES = {
    "index.html": INDEX,
    "1k.txt": _lines(16),
    "64k.txt": _lines(1024),
    "1m.txt": _lines(16384),
    "dir/a.txt": b"file a\n",
    "dir/b.txt": b"file b\n",
    "secret.deny": b"denied by url.access-deny\n",
}


@dataclass
class Site:
    root: Path
    port: int
    docroot: Path

    @property
    def conf(self) -> Path:
        return self.root / "lighttpd.conf"

    @property
    def error_log(self) -> Path:
        return self.root / "tmp" / "error.log"


def make_site(root: str | os.PathLike, port: int, *, docroot: str | os.PathLike | None = None,
              bind: str = "127.0.0.1", modules: tuple[str, ...] = SITE_MODULES, extra: str = SITE_EXTRA) -> Site:
    """A document root (unless `docroot` names one) and a configuration for `bind`:`port` (a guest
    under qemu's user networking binds 0.0.0.0 to be reached through a forwarded port), loading
    `modules` with the `extra` configuration lines."""
    root = Path(root).resolve()
    site = Site(root, port, Path(docroot).resolve() if docroot else root / "www")
    (site.root / "tmp").mkdir(parents=True, exist_ok=True)
    www = site.docroot
    if docroot is None:
        for rel, data in FILES.items():
            path = www / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    site.conf.write_text(CONFIG.format(docroot=www, port=port, tmp=site.root / "tmp", bind=bind,
                                       modules=", ".join(f'"{m}"' for m in modules), extra=extra))
    return site


def binary(arch: str) -> Path:
    try:
        path = BUILDS / DEBARCH[arch] / "usr" / "sbin" / "lighttpd"
    except KeyError:
        raise MvxError(f"no lighttpd build for {arch!r}; one of {', '.join(DEBARCH)}") from None
    if not path.exists():
        raise MvxError(f"{path} is missing: run `just variants` (scripts/fetch_lighttpd.sh)")
    return path


def argv(arch: str) -> list[str]:
    """The ISA's lighttpd with its own module directory."""
    return [str(binary(arch)), "-m", str(BUILDS / DEBARCH[arch] / "usr" / "lib" / "lighttpd")]


# Debian multiarch triplets: each tree's libraries are under lib/<triplet> and usr/lib/<triplet>
TRIPLET = {"amd64": "x86_64-linux-gnu", "i386": "i386-linux-gnu", "arm64": "aarch64-linux-gnu"}


def library_path(builds: Path = BUILDS) -> str:
    """LD_LIBRARY_PATH for every variant of `builds` (each ISA's tree under builds/<debarch>):
    the library directories scripts/fetch_*.sh unpacked there (not installed: see
    scripts/deb_tree.sh), for every ISA (amd64's tree only has those its system lacks: a minimal
    system has no libdeflate0, say).

    Why one LD_LIBRARY_PATH for all rather than one per variant: `mvx run` gives every variant
    the same environment, and a dynamic loader skips a library of another ISA (wrong ELF class or
    machine) and searches on. Those probes are the loader's own calls, never synced (startup
    noise: mvx/mechanics/procinfo.py). The ISA's own loader run as the program
    (`ld-linux.so.2 --library-path DIRS lighttpd ...`) would work under mvx too (its code is the
    loader's range), but the process would then be named ld-linux.so.2 (comm, /proc/PID/exe)."""
    dirs = []
    for debarch in ("amd64", "i386", "arm64"):  # (amd64's tree holds only what the system lacks)
        tree = builds / debarch
        for sub in ("lib", "usr/lib"):
            d = tree / sub / TRIPLET[debarch]
            if d.is_dir():
                dirs.append(str(d))
    return ":".join(dirs)


def env(builds: Path = BUILDS, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to run `mvx run` (or a variant natively) in: `base` (os.environ) with
    library_path() first in LD_LIBRARY_PATH."""
    out = dict(os.environ if base is None else base)
    path = ":".join(p for p in (library_path(builds), out.get("LD_LIBRARY_PATH", "")) if p)
    if path:
        out["LD_LIBRARY_PATH"] = path
    return out


def variant_spec(arch: str, *extra: str) -> str:
    """argv(arch) (plus `extra`) as one --leader/--follower value."""
    return shlex.join([*argv(arch), *extra])


def main(args: list[str]) -> int:
    if len(args) == 2 and args[0] == "argv":
        print(variant_spec(args[1]))
        return 0
    if args == ["libpath"]:
        print(library_path())
        return 0
    if len(args) in (3, 4) and args[0] == "site":
        print(make_site(args[1], int(args[2]), bind=args[3] if len(args) == 4 else "127.0.0.1").conf)
        return 0
    print("usage: python3 -m mvx.demo.lighttpd argv ARCH | site DIR PORT [BIND_ADDR] | libpath", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (MvxError, ValueError) as exc:
        print(f"mvx.demo.lighttpd: {exc}", file=sys.stderr)
        sys.exit(2)
