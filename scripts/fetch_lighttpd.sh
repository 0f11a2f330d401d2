#!/usr/bin/env bash
# Fetch Debian's lighttpd for amd64, i386 and arm64 and unpack each into its own tree:
#   build/debs/lighttpd_<version>_<debarch>.deb
#   build/variants/lighttpd/<debarch>/usr/sbin/lighttpd          (debarch: amd64 i386 arm64)
#   build/variants/lighttpd/{x86_64,aarch64} -> amd64, arm64     (mvx ISA names; i386 is both)
# The three packages cannot be co-installed (same paths), so they are downloaded with
# `apt-get download` and unpacked with `dpkg -x`; their shared libraries (libc6 libcrypt1
# libnettle8 libpcre2-8-0 libxxhash0 for :i386 and :arm64) come from scripts/setup.sh.
# Each variant must load its own ISA's modules: lighttpd -m build/variants/lighttpd/<arch>/usr/lib/lighttpd
# Idempotent: a present .deb is not downloaded again, an unpacked tree is not unpacked again.
set -euo pipefail
cd "$(dirname "$0")/.."
DEBS=build/debs
OUT=build/variants/lighttpd
ARCHS=(amd64 i386 arm64)

retry() { local n=0; until "$@"; do n=$((n+1)); [ $n -ge 4 ] && return 1; echo "fetch_lighttpd: retrying ($n): $*" >&2; sleep $((n*3)); done; }

command -v apt-get >/dev/null || { echo "fetch_lighttpd: error: needs apt-get (Debian)" >&2; exit 1; }
mkdir -p "$DEBS" "$OUT"

missing_arch=()
for a in i386 arm64; do
  dpkg --print-foreign-architectures | grep -qx "$a" || missing_arch+=("$a")
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
done

# mvx names its ISAs x86_64, i386, aarch64.
ln -sfn amd64 "$OUT/x86_64"
ln -sfn arm64 "$OUT/aarch64"

# Check that each build starts (-v only prints the version).
status=0
check() {
  local a=$1; shift
  local out
  if out=$("$@" "$OUT/$a/usr/sbin/lighttpd" -v 2>&1); then
    echo "fetch_lighttpd: $a: $(echo "$out" | head -1)"
  else
    echo "fetch_lighttpd: warning: $a lighttpd does not run: $(echo "$out" | head -1)" >&2
    status=1
  fi
}
check amd64
check i386
if command -v qemu-aarch64 >/dev/null; then
  check arm64 qemu-aarch64
else
  echo "fetch_lighttpd: warning: qemu-aarch64 missing (Debian package qemu-user); arm64 build not checked" >&2
fi
[ "$status" = 0 ] || echo "fetch_lighttpd: some builds do not run; their :i386/:arm64 libraries come from scripts/setup.sh" >&2
echo "fetch_lighttpd: ok ($OUT)"
