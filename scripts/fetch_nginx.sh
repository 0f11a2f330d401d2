#!/usr/bin/env bash
# Fetch Debian's nginx (1.22.1, the `nginx` package: nginx-core/nginx-light are its transitional
# names) for amd64, i386 and arm64 and unpack each into its own tree, as scripts/fetch_lighttpd.sh:
#   build/debs/nginx_<version>_<debarch>.deb, lib*_...
#   build/variants/nginx/<debarch>/usr/sbin/nginx                (debarch: amd64 i386 arm64)
#   build/variants/nginx/{x86_64,aarch64} -> amd64, arm64        (mvx ISA names; i386 is both)
# Its shared libraries other than libc (libcrypt1 libpcre2-8-0 libssl3 zlib1g) are downloaded and
# unpacked into the i386 and arm64 trees (<tree>/lib/<triplet>, <tree>/usr/lib/<triplet>), never
# installed (scripts/deb_tree.sh says why), and found through LD_LIBRARY_PATH (mvx.demo.nginx.env());
# amd64 uses the system's. nginx-common (the default /etc/nginx) is not needed: mvx.demo.nginx
# writes a configuration of its own.
# Idempotent: a present .deb is not downloaded again, an unpacked one is not unpacked again.
set -euo pipefail
cd "$(dirname "$0")/.."
DEBS=build/debs
OUT=build/variants/nginx
ARCHS=(amd64 i386 arm64)
LIBS=(libcrypt1 libpcre2-8-0 libssl3 zlib1g)

log() { echo "fetch_nginx: $*" >&2; }
# shellcheck source=scripts/deb_tree.sh
. scripts/deb_tree.sh

command -v apt-get >/dev/null || { log "error: needs apt-get (Debian)"; exit 1; }
foreign=$(dpkg --print-foreign-architectures)
for a in i386 arm64; do
  grep -qx "$a" <<<"$foreign" || { log "error: dpkg architecture $a not enabled (run: bash scripts/setup.sh)"; exit 1; }
done
mkdir -p "$DEBS" "$OUT"

for a in "${ARCHS[@]}"; do
  dest="$OUT/$a"
  deb=$(deb_fetch nginx "$a")
  if [ "$(cat "$dest/.unpacked-from" 2>/dev/null)" != "$(basename "$deb")" ]; then
    rm -rf "$dest"  # another version: start afresh
    deb_add "$deb" "$dest"
    basename "$deb" >"$dest/.unpacked-from"
  fi
  if [ "$a" != amd64 ]; then
    for lib in "${LIBS[@]}"; do
      deb=$(deb_fetch "$lib" "$a")
      deb_add "$deb" "$dest"
    done
  fi
done

# mvx names its ISAs x86_64, i386, aarch64.
ln -sfn amd64 "$OUT/x86_64"
ln -sfn arm64 "$OUT/aarch64"

# Check that each build starts (-v only prints the version) with its tree's libraries.
status=0
check() {
  local a=$1; shift
  local out
  if out=$(LD_LIBRARY_PATH=$(deb_libdirs "$PWD/$OUT/$a" "$a") "$@" "$OUT/$a/usr/sbin/nginx" -v 2>&1); then
    echo "fetch_nginx: $a: $(echo "$out" | head -1)"
  else
    log "warning: $a nginx does not run: $(echo "$out" | head -1)"
    status=1
  fi
}
check amd64
check i386
if command -v qemu-aarch64 >/dev/null; then
  check arm64 qemu-aarch64 -L /usr/aarch64-linux-gnu
else
  log "warning: qemu-aarch64 missing (Debian package qemu-user); arm64 build not checked"
fi
[ "$status" = 0 ] || exit 1
echo "fetch_nginx: ok ($OUT)"
