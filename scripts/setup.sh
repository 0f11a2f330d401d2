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
  python3-dev python3-pip qemu-user libseccomp2 libseccomp-dev strace curl wrk iproute2 file ca-certificates openssl
  # Shared libraries of Debian's lighttpd 1.4.69 (binary and modules: NEEDED libc, libcrypt,
  # libnettle, libpcre2-8, libxxhash), unpacked by scripts/fetch_lighttpd.sh for i386 and arm64.
  libc6:i386 libcrypt1:i386 libnettle8:i386 libpcre2-8-0:i386 libxxhash0:i386
  libc6:arm64 libcrypt1:arm64 libnettle8:arm64 libpcre2-8-0:arm64 libxxhash0:arm64
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
# On an externally managed (PEP 668) Python, such as Debian's /usr/bin/python3 on a plain PATH,
# pip needs --break-system-packages; mvx's dependencies are pure-Python or self-contained wheels.
pep668=()
$PY -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' &&
  pep668=(--break-system-packages)
# (the pytest plugin, mvx.testing, is registered by the install's entry points: an older install lacks it)
plugin_installed() { $PY -c 'import sys; from importlib.metadata import entry_points
sys.exit(not any(e.value == "mvx.testing" for e in entry_points(group="pytest11")))' 2>/dev/null; }
if ! $PY -c 'import mvx, pyseccomp, trio, pytest_trio, cffi, matplotlib, xxhash, hypothesis' 2>/dev/null ||
   ! $PY -m pip show -q py-spy >/dev/null 2>&1 || ! plugin_installed; then
  retry $PY -m pip install -q "${pep668[@]}" -e '.[dev]'
fi
# `just`: pip's rust-just installs one standalone binary into this Python's scripts dir (or the
# user base with --user), which may be off PATH: pyenv shims need a rehash, CI runs with a plain
# PATH. Make it reachable as /usr/local/bin/just (root) or ~/.local/bin/just.
just_works() { command -v just >/dev/null && just --version >/dev/null 2>&1; }
if ! just_works; then
  just_bin() {
    local d
    for d in "$($PY -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
             "$($PY -c 'import site; print(site.USER_BASE)')/bin"; do
      [ -x "$d/just" ] && { echo "$d/just"; return 0; }
    done
    return 1
  }
  if ! just_bin >/dev/null; then
    retry $PY -m pip install -q "${pep668[@]}" rust-just
  fi
  command -v pyenv >/dev/null && pyenv rehash 2>/dev/null || true
  if ! just_works; then
    jb=$(just_bin) || { echo "setup: rust-just installed but no 'just' binary found" >&2; exit 1; }
    if [ -z "$SUDO" ]; then linkdir=/usr/local/bin; else linkdir=$HOME/.local/bin; fi
    mkdir -p "$linkdir"
    ln -sfn "$jb" "$linkdir/just"
    case ":$PATH:" in
      *":$linkdir:"*) ;;
      *) echo "setup: 'just' is $linkdir/just; add $linkdir to PATH" >&2 ;;
    esac
  fi
fi
just_works && echo "setup: $(just --version) at $(command -v just)"
echo "setup: ok"
