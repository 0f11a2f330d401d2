#!/usr/bin/env bash
# Fetch Debian's lighttpd (and its lighttpd-mod-deflate) for amd64, i386 and arm64 and unpack each
# ISA's into its own tree:
#   build/debs/lighttpd_<version>_<debarch>.deb, lighttpd-mod-deflate_..., lib*_...
#   build/variants/lighttpd/<debarch>/usr/sbin/lighttpd          (debarch: amd64 i386 arm64)
#   build/variants/lighttpd/<debarch>/usr/lib/lighttpd/mod_*.so  (mod_deflate.so included)
#   build/variants/lighttpd/{x86_64,aarch64} -> amd64, arm64     (mvx ISA names; i386 is both)
# The three packages cannot be co-installed (same paths), so they are downloaded with
# `apt-get download` and unpacked with `dpkg -x`. Its shared libraries other than libc (libcrypt1
# libnettle8 libpcre2-8-0 libxxhash0, and mod_deflate's libbrotli1 libdeflate0 libzstd1 zlib1g) are
# unpacked into the i386 and arm64 trees (<tree>/lib/<triplet>, <tree>/usr/lib/<triplet>), never
# installed (scripts/deb_tree.sh says why), and found through LD_LIBRARY_PATH (mvx.demo.lighttpd.env());
# amd64 uses the system's, and its own tree only for those a minimal system lacks. libc: i386 takes libc6-i386's (/lib32, scripts/setup.sh), arm64 runs in
# the arm64 node (its own Debian) or, for the check below, under qemu-aarch64 with the cross libc
# (libc6-arm64-cross, /usr/aarch64-linux-gnu).
# Each variant must load its own ISA's modules: lighttpd -m build/variants/lighttpd/<arch>/usr/lib/lighttpd
# Idempotent: a present .deb is not downloaded again, an unpacked one is not unpacked again.
set -euo pipefail
cd "$(dirname "$0")/.."
DEBS=build/debs
OUT=build/variants/lighttpd
ARCHS=(amd64 i386 arm64)
# lighttpd's and mod_deflate's libraries, unpacked into the trees of the ISAs other than the host's
LIBS=(libcrypt1 libnettle8 libpcre2-8-0 libxxhash0 libbrotli1 libdeflate0 libzstd1 zlib1g)

log() { echo "fetch_lighttpd: $*" >&2; }
# shellcheck source=scripts/deb_tree.sh
. scripts/deb_tree.sh
retry() { deb_retry "$@"; }

command -v apt-get >/dev/null || { echo "fetch_lighttpd: error: needs apt-get (Debian)" >&2; exit 1; }
mkdir -p "$DEBS" "$OUT"

missing_arch=()
foreign=$(dpkg --print-foreign-architectures)  # (not piped into grep -q: under pipefail its SIGPIPE would fail)
for a in i386 arm64; do
  grep -qx "$a" <<<"$foreign" || missing_arch+=("$a")
done
if [ ${#missing_arch[@]} -gt 0 ]; then
  echo "fetch_lighttpd: error: dpkg architecture(s) ${missing_arch[*]} not enabled (run: bash scripts/setup.sh)" >&2
  exit 1
fi

for a in "${ARCHS[@]}"; do
  ver=$(apt-cache policy "lighttpd:$a" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    echo "fetch_lighttpd: error: no lighttpd:$a in the apt lists (run: apt-get update)" >&2
    exit 1
  fi
  deb="$DEBS/lighttpd_${ver//:/%3a}_$a.deb"
  if [ ! -s "$deb" ]; then
    echo "fetch_lighttpd: downloading lighttpd:$a $ver"
    # apt-get download writes into the current directory; as root it warns about _apt sandboxing.
    (cd "$DEBS" && retry apt-get download -q "lighttpd:$a=$ver" 2>&1 | grep -v "unsandboxed" || true)
    [ -s "$deb" ] || { echo "fetch_lighttpd: error: download of lighttpd:$a failed" >&2; exit 1; }
  fi
  dest="$OUT/$a"
  stamp="$dest/.unpacked-from"
  if [ ! -x "$dest/usr/sbin/lighttpd" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$(basename "$deb")" ]; then
    echo "fetch_lighttpd: unpacking $(basename "$deb") -> $dest"
    rm -rf "$dest"
    mkdir -p "$dest"
    dpkg -x "$deb" "$dest"
    basename "$deb" >"$stamp"
  fi
  extra=(lighttpd-mod-deflate)
  for lib in "${LIBS[@]}"; do
    # amd64 takes the system's copy where there is one (a minimal system may lack mod_deflate's)
    if [ "$a" != amd64 ] || ! dpkg-query -W -f='${Status}' "$lib:amd64" 2>/dev/null | grep -q "install ok installed"; then
      extra+=("$lib")
    fi
  done
  for pkg in "${extra[@]}"; do
    deb=$(deb_fetch "$pkg" "$a")
    deb_add "$deb" "$dest"
  done
done

# mvx names its ISAs x86_64, i386, aarch64.
ln -sfn amd64 "$OUT/x86_64"
ln -sfn arm64 "$OUT/aarch64"

# Check that each build starts (-v only prints the version) and loads mod_deflate (-tt loads the
# modules of a configuration).
status=0
conf=$(mktemp -d)
trap 'rm -rf "$conf"' EXIT
printf 'server.document-root = "%s"\nserver.port = 8080\nserver.modules = ( "mod_deflate" )\n' "$conf" >"$conf/deflate.conf"
check() {
  local a=$1; shift
  local out libs
  libs=$(deb_libdirs "$PWD/$OUT/$a" "$a")
  if out=$(LD_LIBRARY_PATH=$libs "$@" "$OUT/$a/usr/sbin/lighttpd" -v 2>&1) \
      && out=$(LD_LIBRARY_PATH=$libs "$@" "$OUT/$a/usr/sbin/lighttpd" -m "$OUT/$a/usr/lib/lighttpd" -tt -f "$conf/deflate.conf" 2>&1 && echo "$out"); then
    echo "fetch_lighttpd: $a: $(echo "$out" | head -1), mod_deflate loads"
  else
    echo "fetch_lighttpd: warning: $a lighttpd does not run: $(echo "$out" | head -1)" >&2
    status=1
  fi
}
check amd64
check i386
if command -v qemu-aarch64 >/dev/null; then
  check arm64 qemu-aarch64 -L /usr/aarch64-linux-gnu
else
  echo "fetch_lighttpd: warning: qemu-aarch64 missing (Debian package qemu-user); arm64 build not checked" >&2
fi
[ "$status" = 0 ] || echo "fetch_lighttpd: some builds do not run; their libraries are unpacked here, their libc comes from scripts/setup.sh (libc6-i386, libc6-arm64-cross)" >&2
echo "fetch_lighttpd: ok ($OUT)"
