#!/usr/bin/env bash
# Idempotent machine set-up for mvx: Debian packages (with i386 and arm64 multiarch),
# Python deps, and the `just` runner. Safe to run repeatedly; every step retries apt.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# gcc-multilib conflicts with Debian's cross compilers: lib32gcc-12-dev + libc6-dev-i386 give gcc -m32.
APT_PKGS=(
  build-essential lib32gcc-12-dev libc6-dev-i386 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  linux-libc-dev linux-libc-dev-arm64-cross
  qemu-user libseccomp2 libseccomp-dev strace curl wrk iproute2 file ca-certificates
  libc6:i386 libpcre2-8-0:i386 libcrypt1:i386 libnettle8:i386 libxxhash0:i386 libzstd1:i386 libssl3:i386 zlib1g:i386 libbz2-1.0:i386 libbrotli1:i386 libbsd0:i386
  libc6:arm64 libpcre2-8-0:arm64 libcrypt1:arm64 libnettle8:arm64 libxxhash0:arm64 libzstd1:arm64 libssl3:arm64 zlib1g:arm64 libbz2-1.0:arm64 libbrotli1:arm64 libbsd0:arm64
)

retry() { local n=0; until "$@"; do n=$((n+1)); [ $n -ge 4 ] && return 1; echo "retrying ($n): $*" >&2; sleep $((n*3)); done; }

need_apt=0
for a in i386 arm64; do
  dpkg --print-foreign-architectures | grep -qx "$a" || { $SUDO dpkg --add-architecture "$a"; need_apt=1; }
done
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || { need_apt=1; break; }
done
if [ "$need_apt" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # A mirror in sync sometimes serves one stale index; a partial update still lets the install go on.
  retry $SUDO apt-get update -q || echo "setup: apt-get update reported errors; trying the install anyway" >&2
  retry $SUDO apt-get install -y -q --no-install-recommends "${APT_PKGS[@]}"
fi

PY=${PYTHON:-python3}
if ! $PY -c 'import mvx, pyseccomp, trio, pytest_trio, cffi' 2>/dev/null; then
  retry $PY -m pip install -q -e '.[dev]'
fi
command -v just >/dev/null || retry $PY -m pip install -q rust-just
echo "setup: ok"
