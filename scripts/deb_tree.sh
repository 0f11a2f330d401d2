# Sourced by scripts/fetch_*.sh: Debian packages of one ISA downloaded (`apt-get download`, never
# installed) and unpacked (`dpkg -x`) into that ISA's own tree.
#
# Why not `apt-get install libfoo:i386`: Debian multiarch needs the same version of a library on
# every architecture, and a mirror in the middle of a sync (one arch's package updated before the
# other's) makes that fail. A tree of the variant's own (build/variants/<program>/<debarch>/) has
# no such coupling; the variant finds its libraries there through LD_LIBRARY_PATH
# (mvx/demo/lighttpd.py `env`, mvx/demo/nginx.py `env`).
#
# Needs: DEBS (download directory), a `log` function (prefixing its messages).

deb_retry() { local n=0; until "$@"; do n=$((n+1)); [ $n -ge 4 ] && return 1; log "retrying ($n): $*"; sleep $((n*3)); done; }

# deb_fetch PKG DEBARCH: download PKG:DEBARCH's candidate into $DEBS (once); prints the .deb's path.
deb_fetch() {
  local pkg=$1 arch=$2 ver deb
  ver=$(apt-cache policy "$pkg:$arch" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    log "error: no $pkg:$arch in the apt lists (run: apt-get update)"
    return 1
  fi
  deb="$DEBS/${pkg}_${ver//:/%3a}_$arch.deb"
  if [ ! -s "$deb" ]; then
    log "downloading $pkg:$arch $ver" >&2
    # apt-get download writes into the current directory; as root it warns about _apt sandboxing.
    (cd "$DEBS" && deb_retry apt-get download -q "$pkg:$arch=$ver" 2>&1 | grep -v "unsandboxed" >&2 || true)
    [ -s "$deb" ] || { log "error: download of $pkg:$arch failed"; return 1; }
  fi
  echo "$deb"
}

# deb_add DEB DEST: unpack DEB into DEST unless DEST/.debs already lists it.
deb_add() {
  local deb=$1 dest=$2 name
  name=$(basename "$deb")
  mkdir -p "$dest"
  if ! grep -qxF "$name" "$dest/.debs" 2>/dev/null; then
    log "unpacking $name -> $dest" >&2
    dpkg -x "$deb" "$dest"
    echo "$name" >>"$dest/.debs"
  fi
}

# deb_libdirs DEST DEBARCH: the library directories of a tree (for LD_LIBRARY_PATH), colon-separated.
deb_libdirs() {
  local triplet
  case $2 in amd64) triplet=x86_64-linux-gnu ;; i386) triplet=i386-linux-gnu ;; arm64) triplet=aarch64-linux-gnu ;;
    *) log "error: unknown architecture $2"; return 1 ;; esac
  echo "$1/lib/$triplet:$1/usr/lib/$triplet"
}
