#!/usr/bin/env bash
# `just fresh`: the README's two commands on a fresh Debian 12 (bookworm) amd64 system, as a new user
# runs them: a minimal root made with mmdebstrap, this repository cloned into it (its HEAD), then
#   bash scripts/setup.sh && just demo
#   bash scripts/setup.sh && just test
# run there as root, each timed, with the results appended to docs/fresh.md.
#
#   bash scripts/fresh.sh [--skew] [--demo-only] [--as-user] [--security] [--keep]
#
# --skew: before the README's commands, make a native library the variants need newer than the
#         i386/arm64 indexes carry (libpcre2-8-0, rebuilt with a higher version and installed), as a
#         security update or a mirror mid-sync does: with foreign libraries installed into the
#         system (apt-get install libpcre2-8-0:i386) set-up cannot succeed there.
# --demo-only: only the first command (set-up and the demo).
# --as-user: the set-up as a user with sudo (mvxuser, sudo without a password), then `mvx --version`
#         and `mvx doctor` as that user; not the demo or the tests (mvx traces as root).
# --security: the root's sources include bookworm-security (default: bookworm, bookworm-updates).
# --keep: leave the root in build/fresh/ (default: removed at the end).
# Needs root (mmdebstrap, chroot, mounts) and the network to a Debian mirror (the host's sources).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
log() { echo "fresh: $*" >&2; }
die() { echo "fresh: error: $*" >&2; exit 1; }

skew=0 demo_only=0 keep=0 as_user=0 security=0
for a in "$@"; do
  case $a in
    --skew) skew=1 ;;
    --demo-only) demo_only=1 ;;
    --keep) keep=1 ;;
    --as-user) as_user=1 ;;
    --security) security=1 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $a (--skew, --demo-only, --as-user, --security, --keep)" ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap, chroot and mounts)"
command -v mmdebstrap >/dev/null || {
  log "installing mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >/dev/null ||
    die "cannot install mmdebstrap (apt-get install mmdebstrap)"
}

name=$(date -u +%Y%m%dT%H%M%S)$([ $skew = 1 ] && echo -skew || true)$([ $as_user = 1 ] && echo -user || true)
base=$REPO/build/fresh/$name
root=$base/root
logs=$REPO/build/fresh/logs-$name  # kept
mkdir -p "$base" "$logs"
mounted=()
cleanup() {
  local i
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  # anything mounted below the root by the run itself (the arm64 node's build, network namespaces)
  { grep -o " $root[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  if [ $keep = 0 ] && ! grep -q " $root" /proc/mounts; then rm -rf "$base"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
log "making a minimal bookworm root with mmdebstrap in $root (a few minutes)"
# bookworm and bookworm-updates of deb.debian.org: a fresh Debian 12 at its point release. With
# --security, bookworm-security too (mmdebstrap's default), whose mirror can be caught mid-sync (a
# library's security update indexed before its -dev package): set-up then stops and says so, as it
# must (scripts/setup.sh), and the run proves nothing more.
sources=("deb http://deb.debian.org/debian bookworm main" "deb http://deb.debian.org/debian bookworm-updates main")
[ $security = 1 ] && sources+=("deb http://deb.debian.org/debian-security bookworm-security main")
mmdebstrap --variant=apt --include=git,ca-certificates$([ $as_user = 1 ] && echo ,sudo || true) bookworm "$root" \
  "${sources[@]}" \
  >"$logs/mmdebstrap.log" 2>&1 ||
  die "mmdebstrap failed (log: $base/mmdebstrap.log)"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The host's own certificate authorities (a site's TLS proxy, say), which its network needs.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the root"
fi
if [ $as_user = 1 ]; then
  chroot "$root" useradd -m -s /bin/bash mvxuser
  echo "mvxuser ALL=(ALL) NOPASSWD:ALL" >"$root/etc/sudoers.d/mvxuser"
  git clone -q "$REPO" "$root/home/mvxuser/mvx"
  chroot "$root" chown -R mvxuser:mvxuser /home/mvxuser/mvx
else
  git clone -q "$REPO" "$root/root/mvx"
fi
rev=$(git -C "$REPO" rev-parse --short HEAD)

bind() { mkdir -p "$root$2"; mount "${@:3}" "$1" "$root$2"; mounted+=("$root$2"); }
# The root a mount point of its own, as / is on a real machine (a follower's world makes the mounts
# of its namespace private from /, which fails on a bare chroot directory).
mount --bind "$root" "$root"
mounted+=("$root")
bind proc /proc -t proc
bind sysfs /sys -t sysfs
bind /dev /dev --rbind
mount --make-rslave "$root/dev"
bind tmpfs /run -t tmpfs
bind tmpfs /tmp -t tmpfs
in_root() { chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" CI="${CI:-}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c "$1"; }

if [ $skew = 1 ]; then
  log "skew: libpcre2-8-0 rebuilt at a version the i386/arm64 indexes do not have, and installed"
  in_root 'set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null
    cd /tmp && apt-get download -q libpcre2-8-0 2>/dev/null; deb=$(ls libpcre2-8-0_*.deb)
    dpkg-deb -R "$deb" x; v=$(sed -n "s/^Version: //p" x/DEBIAN/control)
    sed -i "s/^Version: .*/Version: $v+mvxskew1/" x/DEBIAN/control
    dpkg-deb -b x newer.deb >/dev/null; dpkg -i newer.deb >/dev/null
    echo "fresh: native libpcre2-8-0 is now $(dpkg-query -W -f="\${Version}" libpcre2-8-0:amd64)" >&2' ||
    die "could not make the skew"
fi

results=()
step() {  # step NAME COMMAND
  local s=$SECONDS rc=0
  log "running in the fresh root$([ $as_user = 1 ] && echo " as mvxuser" || true): $2"
  if [ $as_user = 1 ]; then
    in_root "su - mvxuser -c $(printf %q "cd ~/mvx && $2")"
  else
    in_root "cd /root/mvx && $2"
  fi 2>&1 | tee "$logs/$1.log" | sed -u "s/^/  [$1] /" || rc=${PIPESTATUS[0]}
  results+=("| $1 | \`$2\` | $([ $rc = 0 ] && echo passed || echo "FAILED ($rc)") | $((SECONDS - s)) s |")
  log "$1: exit $rc after $((SECONDS - s)) s"
  return $rc
}
status=0
if [ $as_user = 1 ]; then
  # (the doctor's status is not the set-up's: without root it names what a user's run lacks)
  step setup "bash scripts/setup.sh && python3 -m mvx --version && { python3 -m mvx doctor || true; }" || status=$?
elif step demo "bash scripts/setup.sh && just demo" || status=$?; [ $status = 0 ] && [ $demo_only = 0 ]; then
  step test "bash scripts/setup.sh && just test" || status=$?
fi
total=$((SECONDS - t0))
tail_of_tests=$( [ -f "$logs/test.log" ] && grep -E "passed|failed" "$logs/test.log" | tail -1 || true)

{
  echo
  echo "## $(date -u +%Y-%m-%d) $name (commit $rev)$([ $skew = 1 ] && echo ", with a native library ahead of the foreign indexes" || true)"
  echo
  echo "\`bash scripts/fresh.sh $*\`: a minimal bookworm root (mmdebstrap --variant=apt, git and"
  if [ $as_user = 1 ]; then
    echo "ca-certificates, sudo), the repository cloned into it, set-up run there by a user with sudo."
  else
    echo "ca-certificates), the repository cloned into it, the README's commands run there as root."
  fi
  echo
  echo "| step | command | result | time |"
  echo "|---|---|---|---|"
  printf '%s\n' "${results[@]}"
  echo
  echo "Total, the root's making included: $total s.${tail_of_tests:+ pytest: \`$tail_of_tests\`.}"
} >>docs/fresh.md
log "$([ $status = 0 ] && echo passed || echo FAILED) in $total s; results added to docs/fresh.md (logs: $logs)"
exit $status
