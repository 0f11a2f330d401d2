#!/usr/bin/env bash
# Build the test variant programs (variants/src/*.c) and the syscall corpus (tests/corpus/*.c)
# for x86_64, i386 and aarch64:
#   build/variants/<arch>/<prog>    build/corpus/<arch>/<prog>
# An ISA whose toolchain is missing is skipped with a one-line message naming the Debian
# package(s); the script fails only if no toolchain at all is present. A program is rebuilt
# only when its source (or this script; for the corpus also tests/corpus/corpus.h) is newer than
# the binary.
#
#   bash scripts/build_variants.sh [-f]      (-f: rebuild everything)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=variants/src
OUT=build/variants
SCRIPT=scripts/build_variants.sh
CORPUS_SRC=tests/corpus
CORPUS_OUT=build/corpus

force=0
[ "${1:-}" = "-f" ] && force=1

# every program in variants/src
PROGS=()
for f in "$SRC"/*.c; do PROGS+=("$(basename "$f" .c)"); done
COMMON_CFLAGS=(-O2 -g -Wall -Wextra -D_FILE_OFFSET_BITS=64)
# vuln_server and vulnlab must really overflow and keep fixed addresses (see variants/README.md).
VULN_CFLAGS=(-O0 -g -Wall -Wno-stringop-overflow -fno-stack-protector -no-pie -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=0)

host=$(uname -m)
# Per ISA: compiler command (words), extra flags, vuln-only flags, Debian packages needed.
cc_for() {
  case "$1" in
    x86_64)  if [ "$host" = x86_64 ]; then echo "gcc"; else echo "x86_64-linux-gnu-gcc"; fi ;;
    i386)    if [ "$host" = x86_64 ]; then echo "gcc -m32"; else echo "i686-linux-gnu-gcc"; fi ;;
    aarch64) if [ "$host" = aarch64 ]; then echo "gcc"; else echo "aarch64-linux-gnu-gcc"; fi ;;
  esac
}
pkgs_for() {
  case "$1" in
    x86_64)  if [ "$host" = x86_64 ]; then echo "gcc libc6-dev"; else echo "gcc-x86-64-linux-gnu"; fi ;;
    i386)    if [ "$host" = x86_64 ]; then echo "lib32gcc-12-dev libc6-dev-i386"; else echo "gcc-i686-linux-gnu"; fi ;;
    aarch64) if [ "$host" = aarch64 ]; then echo "gcc libc6-dev"; else echo "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"; fi ;;
  esac
}
vuln_flags_for() {
  case "$1" in
    x86_64|i386) echo "-fcf-protection=none" ;;
    aarch64)     echo "-mbranch-protection=none" ;;
  esac
}

# i386 with Debian's gcc -m32 (no gcc-multilib: it conflicts with the cross compilers) finds
# no <asm/...> headers; the x86_64 ones serve both word sizes, so point an include dir at them.
I386_INC=build/include32
setup_i386_shim() {
  mkdir -p "$I386_INC"
  if [ ! -e "$I386_INC/asm" ] && [ -d /usr/include/x86_64-linux-gnu/asm ]; then
    ln -sfn /usr/include/x86_64-linux-gnu/asm "$I386_INC/asm"
  fi
}

# Can this compiler build and link a tiny program? (catches a missing libc/libgcc for -m32)
toolchain_ok() {
  local arch=$1 cc tmp
  read -r -a cc <<<"$(cc_for "$arch")"
  command -v "${cc[0]}" >/dev/null 2>&1 || return 1
  tmp=$(mktemp -d)
  printf '#include <errno.h>\n#include <sys/epoll.h>\nint main(void){return errno;}\n' >"$tmp/t.c"
  local extra=()
  [ "$arch" = i386 ] && extra=(-I"$ROOT/$I386_INC")
  if "${cc[@]}" "${extra[@]}" "$tmp/t.c" -o "$tmp/t" >/dev/null 2>&1; then rm -rf "$tmp"; return 0; fi
  rm -rf "$tmp"
  return 1
}

setup_i386_shim
built_any=0
for arch in x86_64 i386 aarch64; do
  if ! toolchain_ok "$arch"; then
    echo "build_variants: skipping $arch: no working '$(cc_for "$arch")' (Debian packages: $(pkgs_for "$arch"))" >&2
    continue
  fi
  built_any=1
  read -r -a cc <<<"$(cc_for "$arch")"
  extra=()
  [ "$arch" = i386 ] && extra=(-I"$ROOT/$I386_INC")
  mkdir -p "$OUT/$arch"
  for prog in "${PROGS[@]}"; do
    src=$SRC/$prog.c
    bin=$OUT/$arch/$prog
    if [ "$force" = 0 ] && [ -x "$bin" ] && [ ! "$src" -nt "$bin" ] && [ ! "$SCRIPT" -nt "$bin" ]; then
      continue
    fi
    if [ "$prog" = vuln_server ] || [ "$prog" = vulnlab ]; then
      read -r -a vf <<<"$(vuln_flags_for "$arch")"
      flags=("${VULN_CFLAGS[@]}" "${vf[@]}")
      # vulnlab is static: a ROP chain's gadgets come from its own copy of libc
      [ "$prog" = vulnlab ] && flags+=(-static)
    else
      flags=("${COMMON_CFLAGS[@]}")
    fi
    echo "build_variants: $arch/$prog"
    "${cc[@]}" "${extra[@]}" "${flags[@]}" -o "$bin.tmp" "$src"
    mv -f "$bin.tmp" "$bin"
  done
  mkdir -p "$CORPUS_OUT/$arch"
  for src in "$CORPUS_SRC"/*.c; do
    [ -e "$src" ] || continue
    prog=$(basename "$src" .c)
    bin=$CORPUS_OUT/$arch/$prog
    if [ "$force" = 0 ] && [ -x "$bin" ] && [ ! "$src" -nt "$bin" ] && [ ! "$CORPUS_SRC/corpus.h" -nt "$bin" ] \
       && [ ! "$SCRIPT" -nt "$bin" ]; then
      continue
    fi
    echo "build_variants: corpus $arch/$prog"
    "${cc[@]}" "${extra[@]}" "${COMMON_CFLAGS[@]}" -o "$bin.tmp" "$src"
    mv -f "$bin.tmp" "$bin"
  done
done

if [ "$built_any" = 0 ]; then
  echo "build_variants: error: no C toolchain found for any ISA (run: bash scripts/setup.sh)" >&2
  exit 1
fi
echo "build_variants: ok ($OUT, $CORPUS_OUT)"
