#!/usr/bin/env bash
# Idempotent machine set-up for mvx: Debian packages, Python deps, and the `just` runner. Safe to run
# repeatedly; every step retries apt and names what failed.
#
# Only packages of the host's own architecture are installed. The variants' foreign-ISA libraries
# (Debian's lighttpd and nginx for i386 and arm64) are downloaded and unpacked into each variant's
# own tree by scripts/fetch_*.sh, never installed: Debian multiarch needs one version of a library on
# every architecture, and a mirror mid-sync (or a native security update the i386/arm64 indexes do
# not carry yet) makes `apt-get install libfoo:i386` fail (docs/DESIGN.md, "Set-up").
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "needs root, or sudo, to install Debian packages (run as root, or install sudo)"
  SUDO="sudo"
fi
command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "needs a Debian (12, bookworm) system: apt-get and dpkg not found"

# gcc-multilib conflicts with Debian's cross compilers: lib32gcc-12-dev + libc6-dev-i386 give gcc -m32
# (and libc6-i386, the i386 libc in /lib32, which the i386 variants use: see the loader link below).
APT_PKGS=(
  build-essential lib32gcc-12-dev libc6-dev-i386 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  linux-libc-dev linux-libc-dev-arm64-cross
  python3-dev python3-pip qemu-user libseccomp2 libseccomp-dev strace curl wrk iproute2 file ca-certificates openssl
  procps mount python3-venv  # pgrep, ps (the tests look for processes left behind), mount (the arm64 node), venv (tests/test_package.py)
)

retry() { local n=0; until "$@"; do n=$((n+1)); [ $n -ge 4 ] && return 1; say "retrying ($n): $*"; sleep $((n*3)); done; }

need_apt=0
# The foreign architectures are enabled for `apt-get download` of the variants' packages (nothing of
# theirs is installed).
foreign=$(dpkg --print-foreign-architectures)  # (not piped into grep -q: under pipefail its SIGPIPE would fail)
for a in i386 arm64; do
  grep -qx "$a" <<<"$foreign" || { $SUDO dpkg --add-architecture "$a"; need_apt=1; }
done
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] && need_apt=1
if [ "$need_apt" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  say "updating the apt lists, then installing ${#missing[@]} Debian package(s): ${missing[*]:-none} (a few minutes on a fresh machine)"
  # A mirror mid-sync sometimes serves one stale or missing index: its lines are shown, and the
  # install goes on with the lists that did update (the host's own packages rarely need the others).
  log=$(mktemp)
  if ! retry $SUDO apt-get update -q >"$log" 2>&1; then
    say "apt-get update failed for some indexes (the install goes on with the others):"
    grep -E "^(E|W|Err):" "$log" | sort -u | sed 's/^/setup:   /' >&2 || tail -3 "$log" | sed 's/^/setup:   /' >&2
  fi
  # A mirror mid-sync can also carry a library newer than the -dev package that wants it at one exact
  # version ("libexpat1-dev : Depends: libexpat1 (= V) but W is to be installed"): then ask for that
  # exact version (the index that has the -dev has it too) and try again, saying so.
  want=("${APT_PKGS[@]}")
  for attempt in 1 2 3 4; do
    if retry $SUDO apt-get install -y -q --no-install-recommends "${want[@]}" >"$log" 2>&1; then
      break
    fi
    pins=$(sed -n 's/.*Depends: \([^ ]*\) (= \([^)]*\)) but .* is to be installed.*/\1=\2/p' "$log" | sort -u)
    new_pins=()
    for pin in $pins; do
      printf '%s\n' "${want[@]}" | grep -qxF "$pin" || new_pins+=("$pin")
    done
    if [ $attempt = 4 ] || [ ${#new_pins[@]} = 0 ]; then
      grep -E "^(E|W):|Depends:|Breaks:|Conflicts:" "$log" | sort -u | sed 's/^/setup:   /' >&2 ||
        tail -5 "$log" | sed 's/^/setup:   /' >&2
      rm -f "$log"
      [ ${#want[@]} -gt ${#APT_PKGS[@]} ] &&  # pinned already: only a downgrade of an installed library would do
        die "the mirror is mid-sync (a -dev package wants an older ${want[*]:${#APT_PKGS[@]}} than is installed): wait for it to finish, then run this again"
      die "apt-get install of mvx's Debian packages failed (above: apt's reasons); check the mirror in /etc/apt/sources.list*, then run this again"
    fi
    say "the mirror's indexes disagree (mid-sync?): installing ${new_pins[*]} to match what depends on it exactly (apt-get upgrade later brings it up to date)"
    want+=("${new_pins[@]}")
  done
  rm -f "$log"
fi

# i386 programs (ours built with gcc -m32, Debian's lighttpd and nginx) ask for the loader at
# /lib/ld-linux.so.2, which Debian ships in libc6:i386, a foreign package this set-up does not
# install; libc6-i386 (a native package, always at the native libc's version) has the same loader in
# /lib32. Link it where the programs look, unless libc6:i386 (or anything) already put one there.
if [ "$(uname -m)" = x86_64 ] && [ ! -e /lib/ld-linux.so.2 ]; then
  [ -e /lib32/ld-linux.so.2 ] || die "libc6-i386 installed but /lib32/ld-linux.so.2 is missing"
  say "linking /lib/ld-linux.so.2 -> /lib32/ld-linux.so.2 (the i386 loader of libc6-i386)"
  $SUDO ln -s /lib32/ld-linux.so.2 /lib/ld-linux.so.2
fi

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || die "$PY not found (Debian: python3; or PYTHON=/path/to/python3)"
# On an externally managed (PEP 668) Python, such as Debian's /usr/bin/python3 on a plain PATH,
# pip needs --break-system-packages; mvx's dependencies are pure-Python or self-contained wheels.
pep668=()
$PY -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' &&
  pep668=(--break-system-packages)
# (the pytest plugin, mvx.testing, is registered by the install's entry points: an older install lacks it)
plugin_installed() { $PY -c 'import sys; from importlib.metadata import entry_points
sys.exit(not any(e.value == "mvx.testing" for e in entry_points(group="pytest11")))' 2>/dev/null; }
if ! $PY -c 'import mvx, pyseccomp, trio, pytest_trio, cffi, matplotlib, xxhash, hypothesis, ptrace' 2>/dev/null ||
   ! $PY -m pip show -q py-spy >/dev/null 2>&1 || ! plugin_installed; then
  say "installing mvx (builds its C part) and its Python dependencies with $PY -m pip"
  retry $PY -m pip install -q "${pep668[@]}" -e '.[dev]' ||
    die "pip install -e '.[dev]' failed with $PY (above: pip's reason); PYTHON=/path/to/python3 picks another Python"
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
    jb=$(just_bin) || die "pip's rust-just is installed but no 'just' binary was found in $PY's scripts directory"
    # /usr/local/bin (with sudo for a user): on every PATH, so the README's `... && just demo` finds
    # it in the same shell (a user's ~/.local/bin is on PATH only from the next login, if at all)
    linkdir=/usr/local/bin
    [ "$(readlink -f "$jb")" = "$(readlink -f "$linkdir/just" 2>/dev/null)" ] ||
      $SUDO ln -sfn "$jb" "$linkdir/just" || die "cannot link $jb as $linkdir/just"
    case ":$PATH:" in
      *":$linkdir:"*) ;;
      *) echo "setup: 'just' is $linkdir/just; add $linkdir to PATH" >&2 ;;
    esac
  fi
fi
just_works && echo "setup: $(just --version) at $(command -v just)"
echo "setup: ok"
