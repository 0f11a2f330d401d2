"""Debian's nginx 1.22 as mvx variants: one process (`master_process off`), a site (document root,
configuration, temporary directory) made in a directory, and each ISA's command line.

scripts/fetch_nginx.sh unpacks the Debian builds under build/variants/nginx/<debarch>, with the
i386 and arm64 builds' libraries in their own trees (found through LD_LIBRARY_PATH: `env()`):

    python3 -m mvx.demo.nginx site /tmp/ngx 8080       # prints the configuration's path
    LD_LIBRARY_PATH="$(python3 -m mvx.demo.nginx libpath)" python3 -m mvx run \\
        --leader "$(python3 -m mvx.demo.nginx argv x86_64 /tmp/ngx)" \\
        --follower "$(python3 -m mvx.demo.nginx argv i386 /tmp/ngx)"
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from mvx import MvxError
from mvx.demo import lighttpd

ROOT = Path(__file__).resolve().parents[2]
BUILDS = ROOT / "build" / "variants" / "nginx"
DEBARCH = lighttpd.DEBARCH

# Every path nginx would otherwise take from its build (/var/log/nginx, /var/lib/nginx/*, /run)
# is in the site's tmp directory; `-e` names the error log nginx opens before it reads this file.
CONFIG = """\
# nginx for mvx variants (Debian nginx 1.22, any ISA); written by mvx.demo.nginx
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log notice;
events {{
    worker_connections 256;
}}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{
        text/html html;
        text/plain txt;
    }}
    default_type application/octet-stream;
{extra}    server {{
        listen {bind}:{port};
        root {docroot};
    }}
}}
"""

FILES = {
    "index.html": lighttpd.INDEX,
    "1k.txt": lighttpd.FILES["1k.txt"],
    "1m.txt": lighttpd.FILES["1m.txt"],
}


@dataclass
class Site:
    root: Path
    port: int
    docroot: Path

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def error_log(self) -> Path:
        return self.tmp / "error.log"


def make_site(root: str | os.PathLike, port: int, *, docroot: str | os.PathLike | None = None,
              bind: str = "127.0.0.1", extra: str = "") -> Site:
    """A document root (unless `docroot` names one) and a configuration for `bind`:`port`, with
    `extra` lines in its http block."""
    root = Path(root).resolve()
    site = Site(root, port, Path(docroot).resolve() if docroot else root / "www")
    site.tmp.mkdir(parents=True, exist_ok=True)
    if docroot is None:
        for rel, data in FILES.items():
            path = site.docroot / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    site.conf.write_text(CONFIG.format(tmp=site.tmp, docroot=site.docroot, bind=bind, port=port, extra=extra))
    return site


def binary(arch: str) -> Path:
    try:
        path = BUILDS / DEBARCH[arch] / "usr" / "sbin" / "nginx"
    except KeyError:
        raise MvxError(f"no nginx build for {arch!r}; one of {', '.join(DEBARCH)}") from None
    if not path.exists():
        raise MvxError(f"{path} is missing: run `just variants` (scripts/fetch_nginx.sh)")
    return path


def argv(arch: str, site_root: str | os.PathLike) -> list[str]:
    """The ISA's nginx on the site in `site_root`: its configuration, its prefix, its error log."""
    root = Path(site_root).resolve()
    return [str(binary(arch)), "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "tmp" / "error.log")]


def variant_spec(arch: str, site_root: str | os.PathLike) -> str:
    """argv(arch, site_root) as one --leader/--follower value."""
    return shlex.join(argv(arch, site_root))


def library_path() -> str:
    """LD_LIBRARY_PATH for every variant: the i386 and arm64 trees' libraries (see
    mvx.demo.lighttpd.library_path for why one path serves every ISA)."""
    return lighttpd.library_path(BUILDS)


def env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to run `mvx run` (or nginx natively) in."""
    return lighttpd.env(BUILDS, base)


def main(args: list[str]) -> int:
    if len(args) == 3 and args[0] == "argv":
        print(variant_spec(args[1], args[2]))
        return 0
    if args == ["libpath"]:
        print(library_path())
        return 0
    if len(args) in (3, 4) and args[0] == "site":
        print(make_site(args[1], int(args[2]), bind=args[3] if len(args) == 4 else "127.0.0.1").conf)
        return 0
    print("usage: python3 -m mvx.demo.nginx site DIR PORT [BIND_ADDR] | argv ARCH DIR | libpath", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (MvxError, ValueError) as exc:
        print(f"mvx.demo.nginx: {exc}", file=sys.stderr)
        sys.exit(2)
