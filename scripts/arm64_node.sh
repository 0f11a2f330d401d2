#!/usr/bin/env bash
# arm64 test node: a Debian 12 arm64 guest under qemu-system-aarch64 (TCG) on an x86_64 host.
#
#   bash scripts/arm64_node.sh build [-f]
#       Installs the host packages it needs (qemu-system-arm, mmdebstrap, qemu-user-static, ...)
#       and makes the cached guest in build/arm64-node/: vmlinuz, initrd.img, rootfs.img (ext4).
#       Idempotent: build/arm64-node/stamp records the inputs; rebuilt only when they change (-f: always).
#
#   bash scripts/arm64_node.sh run [options] -- CMD [ARG...]
#       Boots the guest (the image is never modified: qemu -snapshot), runs CMD as root, streams its
#       stdout/stderr here, powers the guest off and exits with CMD's exit status.
#       The repo root is shared read-write (9p) at the SAME path in the guest; the command runs with
#       cwd = the current directory if it is inside the repo, else the repo root. PYTHONPATH has the
#       repo root, so `python3 -m mvx ...` and `python3 -m pytest ...` work as on the host.
#       The guest's native mvx module (cffi) is built in build/arm64-node/native/, which the guest
#       bind-mounts over mvx/mechanics/native/_build, so the host's x86_64 build is never touched.
#       Options:
#         --fwd HOSTPORT:GUESTPORT   forward host 127.0.0.1:HOSTPORT to guest TCP port (repeatable);
#                                    the guest reaches the host's loopback at 10.0.2.2
#         --timeout SECONDS          kill the guest after this long (default 1800; exit status 124)
#         --smp N  --mem MB          guest CPUs (default 2) and memory (default 2048)
#         -e NAME=VALUE              set an environment variable for CMD (repeatable)
#       CMD is exec'd as given (no shell): use `-- sh -c '...'` for pipes, redirections, `cd`.
#       No stdin is passed (CMD reads /dev/null). Exit status 125: the guest did not report one
#       (its console log is shown). Only one guest runs at a time: runs wait for each other (flock).
#       A run costs ~10 s of boot (kernel ~4 s, initramfs + guest init the rest) plus the command,
#       which runs 10-20x slower than on the host (TCG): give tests generous timeouts.
#
#   bash scripts/arm64_node.sh start [--fwd ...] [--smp N] [--mem MB]   boot a background guest
#   bash scripts/arm64_node.sh exec [--timeout S] [-e N=V] -- CMD...     run CMD in it (like run)
#   bash scripts/arm64_node.sh stop                                      power it off
#   bash scripts/arm64_node.sh status                                    is it running?
#       The background guest polls a shared directory for commands (no ssh) and runs them one at a
#       time, in order (an exec waits for the ones before it). While it runs, `run`
#       waits for it to stop (one qemu at a time).
#
# From tests (host side): one command per boot,
#       subprocess.run(["bash", "scripts/arm64_node.sh", "run", "--timeout", "900", "--",
#                       "python3", "-m", "pytest", "-q", "tests/test_x.py"])  -> CMD's exit status;
#   or, for many commands against one booted guest (e.g. a session-scoped pytest fixture):
#       start [--fwd 18080:80]; exec -- CMD ... (each ~0.5 s overhead); stop (always, in a finally).
#   Guest servers are reached from the host through --fwd (host 127.0.0.1:HOSTPORT); the guest
#   reaches host services at 10.0.2.2. Files written in the repo (or build/) are seen by both sides.
#
# Environment: ARM64_NODE_DIR (default <repo>/build/arm64-node), ARM64_NODE_SMP, ARM64_NODE_MEM.
set -euo pipefail

SCRIPT_VERSION=2
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
# The repo root is shared read-write with the guest: never share anything else.
[ -f "$ROOT/scripts/arm64_node.sh" ] && [ -f "$ROOT/pyproject.toml" ] ||
  { echo "arm64-node: error: run scripts/arm64_node.sh from its repo ($ROOT is not one)" >&2; exit 1; }
NODE=${ARM64_NODE_DIR:-$ROOT/build/arm64-node}
SUITE=bookworm
# Guest packages (arm64). mvx needs python3 + cffi + gcc + libseccomp; tests need lighttpd, curl, strace.
GUEST_PKGS=(
  linux-image-arm64 initramfs-tools kmod mount procps iproute2 util-linux
  python3 python3-dev python3-pip python3-cffi gcc make libc6-dev libseccomp2 libseccomp-dev
  curl ca-certificates openssl lighttpd strace file wrk
)
# Wheels (pure Python, and xxhash built for aarch64), downloaded on the host (pip's cache) and installed in the rootfs.
PIP_PKGS=(trio==0.22.2 pytest==9.0.3 pytest-trio==0.8.0 pyseccomp==0.1.2 xxhash==3.5.0)
# Modules the initramfs loads, so the root disk (virtio-blk on PCI) and 9p mount.
# MODULES=list: only these (and their dependencies) go in, which keeps mkinitramfs under qemu-user
# fast (MODULES=most copies hundreds of modules, one emulated fork each: ~10 min per run).
INITRD_MODULES=(virtio_pci virtio_mmio virtio_blk virtio_net virtio_rng crc32c_generic 9pnet 9pnet_virtio 9p ext4)

log() { echo "arm64-node: $*" >&2; }
die() { echo "arm64-node: error: $*" >&2; exit 1; }
retry() { local n=0; until "$@"; do n=$((n+1)); [ $n -ge 4 ] && return 1; log "retrying ($n): $*"; sleep $((n*3)); done; }

# ---------------------------------------------------------------------------------------------
# host packages

HOST_PKGS=(qemu-system-arm:qemu-system-aarch64 mmdebstrap:mmdebstrap qemu-user-static:qemu-aarch64-static
           e2fsprogs:mkfs.ext4 arch-test:arch-test util-linux:flock coreutils:timeout)

ensure_host_pkgs() {
  local missing=() p bin
  for p in "${HOST_PKGS[@]}"; do
    bin=${p#*:}
    command -v "$bin" >/dev/null 2>&1 || missing+=("${p%%:*}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing host packages: ${missing[*]} (run as root or: sudo apt-get install ${missing[*]})"
  log "installing host packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  retry apt-get update -q >/dev/null || log "apt-get update reported errors; trying the install anyway"
  retry apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    die "cannot install host packages: ${missing[*]} (apt-get install ${missing[*]})"
  for p in "${HOST_PKGS[@]}"; do
    command -v "${p#*:}" >/dev/null 2>&1 || die "missing host package ${p%%:*} (no ${p#*:} after apt-get install)"
  done
}

# mmdebstrap runs arm64 maintainer scripts through binfmt_misc + qemu-aarch64-static. The handler is
# registered only for the build and removed afterwards (an aarch64 ELF must not silently run under
# qemu-user on this host for the other tests).
BINFMT=/proc/sys/fs/binfmt_misc
binfmt_registered_by_us=0
binfmt_on() {
  [ -e $BINFMT/register ] || mount -t binfmt_misc binfmt_misc $BINFMT 2>/dev/null ||
    die "binfmt_misc is not available (mount -t binfmt_misc binfmt_misc $BINFMT failed)"
  if [ -e $BINFMT/qemu-aarch64 ]; then
    grep -q '^enabled' $BINFMT/qemu-aarch64 || die "binfmt handler qemu-aarch64 is registered but disabled"
    return 0
  fi
  local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  [ -r $conf ] || die "no $conf (apt-get install qemu-user-static)"
  # F: the interpreter is opened now, so it works inside the chroot too.
  local line; line=$(grep -v '^#' $conf | head -1)
  case "$line" in *:*F*) ;; *) line="${line}F" ;; esac
  printf '%s' "$line" >$BINFMT/register || die "cannot register the qemu-aarch64 binfmt handler"
  binfmt_registered_by_us=1
}
binfmt_off() {
  if [ "$binfmt_registered_by_us" = 1 ] && [ -e $BINFMT/qemu-aarch64 ]; then
    echo -1 >$BINFMT/qemu-aarch64 || true
    binfmt_registered_by_us=0
  fi
}

# ---------------------------------------------------------------------------------------------
# build

# The stub that the kernel runs as init: it mounts the per-run 9p share and runs the init script
# the host put there (so guest-side logic changes need no image rebuild).
GUEST_STUB='#!/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
modprobe -a 9pnet_virtio 9p 2>/dev/null
mkdir -p /run/mvx
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=mmap mvxrun /run/mvx; then
  exec /bin/bash /run/mvx/init.sh
fi
echo "mvx-guest-init: cannot mount the run share (9p tag mvxrun)"
echo o >/proc/sysrq-trigger
sleep 10'

recipe() {
  # Everything the image depends on; its hash is the stamp.
  declare -p SCRIPT_VERSION SUITE GUEST_PKGS PIP_PKGS INITRD_MODULES GUEST_STUB
}

# Remove a (partial) rootfs dir: first unmount whatever mmdebstrap may have left mounted inside
# it (proc, sys, dev/pts...), and never cross into another file system.
rm_rootfs() {
  local d=$1 m
  [ -e "$d" ] || return 0
  d=$(realpath "$d")
  for m in $(awk -v d="$d/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$d"
}

mmdebstrap_once() {  # a failed try leaves a partial target ($rootfs of cmd_build); mmdebstrap wants it absent
  rm_rootfs "$rootfs"
  mmdebstrap "$@"
}

cmd_build() {
  local force=0
  [ "${1:-}" = "-f" ] && force=1
  local want; want=$(recipe | sha256sum | cut -d' ' -f1)
  if [ $force = 0 ] && [ -f "$NODE/stamp" ] && [ "$(cat "$NODE/stamp")" = "$want" ] &&
     [ -f "$NODE/rootfs.img" ] && [ -f "$NODE/vmlinuz" ] && [ -f "$NODE/initrd.img" ]; then
    log "up to date ($NODE)"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "build needs root (mmdebstrap, binfmt_misc)"
  ensure_host_pkgs
  mkdir -p "$NODE"
  exec 9>"$NODE/qemu.lock"
  flock -n 9 || { log "waiting for a running guest to stop"; flock 9; }
  local t0=$SECONDS
  local work="$NODE/build.tmp"
  rm_rootfs "$work/rootfs"
  rm -rf "$work"
  mkdir -p "$work/wheels"

  log "downloading wheels: ${PIP_PKGS[*]}"
  local py=python3
  retry $py -m pip download -q --only-binary=:all: --platform manylinux2014_aarch64 --python-version 3.11 \
    --implementation cp --abi cp311 -d "$NODE/wheels" "${PIP_PKGS[@]}" 2> >(grep -v "^WARNING: Location" >&2) ||
    die "pip download failed: ${PIP_PKGS[*]}"
  cp "$NODE"/wheels/*.whl "$work/wheels/"

  # initramfs hook: force-load the virtio/9p/ext4 modules (not a conffile, so no dpkg prompt).
  {
    echo '#!/bin/sh'
    echo 'PREREQ=""; prereqs() { echo "$PREREQ"; }; case "$1" in prereqs) prereqs; exit 0;; esac'
    echo '. /usr/share/initramfs-tools/hook-functions'
    for m in "${INITRD_MODULES[@]}"; do echo "force_load $m"; done
  } >"$work/mvx-modules"
  printf '%s\n' "$GUEST_STUB" >"$work/mvx-guest-init"
  chmod 755 "$work/mvx-modules" "$work/mvx-guest-init"

  local mirror=()
  [ -f /etc/apt/sources.list.d/debian.sources ] && grep -q "Suites:.*$SUITE" /etc/apt/sources.list.d/debian.sources &&
    mirror=(/etc/apt/sources.list.d/debian.sources)

  binfmt_on
  trap 'binfmt_off' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  log "mmdebstrap arm64 $SUITE ($(echo "${GUEST_PKGS[@]}" | wc -w) packages; takes a few minutes)"
  local rootfs="$work/rootfs"
  local mmlog="$work/mmdebstrap.log"
  if ! retry mmdebstrap_once --mode=root --arch=arm64 --variant=apt --format=directory \
      --include="$(IFS=,; echo "${GUEST_PKGS[*]}")" \
      --aptopt='Acquire::Retries "5"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --essential-hook="mkdir -p \"\$1/etc/initramfs-tools/hooks\" \"\$1/etc/initramfs-tools/conf.d\" && cp '$work/mvx-modules' \"\$1/etc/initramfs-tools/hooks/mvx-modules\" && echo MODULES=list >\"\$1/etc/initramfs-tools/conf.d/mvx\"" \
      --customize-hook="cp '$work/mvx-guest-init' \"\$1/usr/local/sbin/mvx-guest-init\"" \
      --customize-hook="mkdir -p \"\$1/tmp/wheels\" && cp '$work'/wheels/*.whl \"\$1/tmp/wheels/\"" \
      --customize-hook="chroot \"\$1\" python3 -m pip install -q --break-system-packages --no-index --find-links /tmp/wheels --no-warn-script-location ${PIP_PKGS[*]}" \
      --customize-hook="rm -rf \"\$1/tmp/wheels\" \"\$1/root/.cache\"" \
      --customize-hook="echo arm64-node >\"\$1/etc/hostname\"; printf '127.0.0.1 localhost\n127.0.1.1 arm64-node\n::1 localhost ip6-localhost ip6-loopback\n' >\"\$1/etc/hosts\"; echo 'nameserver 10.0.2.3' >\"\$1/etc/resolv.conf\"; echo '/dev/vda / ext4 rw 0 1' >\"\$1/etc/fstab\"; chroot \"\$1\" passwd -d root >/dev/null" \
      "$SUITE" "$rootfs" "${mirror[@]}" >"$mmlog" 2>&1; then
    tail -30 "$mmlog" >&2
    die "mmdebstrap failed (log: $mmlog)"
  fi
  binfmt_off
  trap - EXIT

  local kver
  kver=$(ls "$rootfs/lib/modules" | sort -V | tail -1)
  [ -n "$kver" ] && [ -f "$rootfs/boot/vmlinuz-$kver" ] && [ -f "$rootfs/boot/initrd.img-$kver" ] ||
    die "no kernel/initrd in the rootfs (log: $mmlog)"
  log "kernel $kver"
  cp "$rootfs/boot/vmlinuz-$kver" "$work/vmlinuz"
  cp "$rootfs/boot/initrd.img-$kver" "$work/initrd.img"
  rm -f "$rootfs/boot/initrd.img-$kver"  # only the host needs it
  local used size
  used=$(du -sm "$rootfs" | cut -f1)
  size=$(( used + used / 4 + 2048 ))  # 2 GB free for what the guest builds (writes go to a snapshot)
  log "ext4 image: ${used} MB used, ${size} MB"
  mkfs.ext4 -q -F -L arm64-node -d "$rootfs" "$work/rootfs.img" "${size}M" >/dev/null || die "mkfs.ext4 -d failed"
  rm_rootfs "$rootfs"
  mv -f "$work/vmlinuz" "$work/initrd.img" "$work/rootfs.img" "$NODE/"
  echo "$want" >"$NODE/stamp"
  { echo "kernel $kver"; echo "built $(date -u +%FT%TZ) in $((SECONDS - t0)) s"; recipe; } >"$NODE/build-info.txt"
  rm -rf "$work"
  log "built in $((SECONDS - t0)) s: $NODE/{vmlinuz,initrd.img,rootfs.img}"
}

# ---------------------------------------------------------------------------------------------
# guest side of run/start: written into the run share for each boot

guest_init_script() {
  cat <<'EOF'
#!/bin/bash
# Runs as PID 1 in the guest (exec'd by /usr/local/sbin/mvx-guest-init). Written by arm64_node.sh.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb
R=/run/mvx
say() { echo "mvx-guest: $*" >/dev/console 2>/dev/null || true; }
off() { sync; echo o >/proc/sysrq-trigger; sleep 30; }
trap off EXIT
mountpoint -q /dev/pts || { mkdir -p /dev/pts && mount -t devpts -o gid=5,mode=620 devpts /dev/pts; }
mountpoint -q /dev/shm || { mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm; }
mountpoint -q /tmp || mount -t tmpfs -o mode=1777 tmpfs /tmp
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
[ -L /dev/fd ] || ln -sf /proc/self/fd /dev/fd
[ -e /dev/stdin ] || { ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr; }
hostname arm64-node
# The host's time zone (a two-node run compares what each node's libc reads from /etc/localtime).
if [ -f $R/localtime ]; then cp $R/localtime /etc/localtime; else rm -f /etc/localtime; fi
modprobe -a virtio_net virtio_rng 2>/dev/null
. $R/config   # REPO, SHARED_NATIVE, MODE, NOFILE_SOFT, NOFILE_HARD
# The host's open-file limits: programs size tables by them (lighttpd's epoll array), and a
# two-node run compares those sizes.
[ -n "${NOFILE_HARD:-}" ] && ulimit -Hn "$NOFILE_HARD" 2>/dev/null
[ -n "${NOFILE_SOFT:-}" ] && ulimit -Sn "$NOFILE_SOFT" 2>/dev/null
mkdir -p "$REPO"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=mmap mvxrepo "$REPO" || { say "cannot mount the repo share"; exit 1; }
# The guest's cffi build of mvx/mechanics/native goes to a per-arch dir, not the host's x86_64 one.
if [ -d "$REPO/mvx/mechanics/native" ] && [ -n "$SHARED_NATIVE" ]; then
  mkdir -p "$REPO/mvx/mechanics/native/_build" "$SHARED_NATIVE" && mount --bind "$SHARED_NATIVE" "$REPO/mvx/mechanics/native/_build"
fi
ip link set lo up
nic=$(ls /sys/class/net | grep -v '^lo$' | head -1)
if [ -n "$nic" ]; then
  ip link set "$nic" up && ip addr add 10.0.2.15/24 dev "$nic" && ip route add default via 10.0.2.2
else
  say "no network interface"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

run_one() {  # $1: command dir with cmd (bash), cwd, env; writes out, err, status
  local d=$1 rc
  (
    cd "$(cat "$d/cwd")" || exit 125
    set -a; [ -f "$d/env" ] && . "$d/env"; set +a
    exec bash "$d/cmd" <"/dev/null" >"$d/out" 2>"$d/err"
  )
  rc=$?
  echo $rc >"$d/status.tmp" && mv "$d/status.tmp" "$d/status"
}

if [ "$MODE" = run ]; then
  run_one $R
  sync
  exit 0
fi
# MODE=server: run every $R/queue/<id>/ that has a `go` file, in order; stop on $R/stop.
say "ready"
touch $R/ready
while [ ! -e $R/stop ]; do
  for d in $R/queue/*/; do
    d=${d%/}
    [ -e "$d/go" ] && [ ! -e "$d/started" ] || continue
    touch "$d/started"
    run_one "$d"
  done
  sleep 0.2
done
EOF
}

# ---------------------------------------------------------------------------------------------
# run / start / exec / stop

fwds=(); timeout=1800; smp=${ARM64_NODE_SMP:-2}; mem=${ARM64_NODE_MEM:-2048}; envs=(); cmd=()
parse_opts() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --fwd) [[ "${2:-}" =~ ^[0-9]+:[0-9]+$ ]] || die "--fwd wants HOSTPORT:GUESTPORT"; fwds+=("$2"); shift 2 ;;
      --fwd=*) set -- --fwd "${1#--fwd=}" "${@:2}" ;;
      --timeout) [[ "${2:-}" =~ ^[0-9]+$ ]] || die "--timeout wants seconds"; timeout=$2; shift 2 ;;
      --timeout=*) set -- --timeout "${1#--timeout=}" "${@:2}" ;;
      --smp) smp=$2; shift 2 ;;
      --mem) mem=$2; shift 2 ;;
      -e) [[ "${2:-}" == *=* ]] || die "-e wants NAME=VALUE"; envs+=("$2"); shift 2 ;;
      --) shift; cmd=("$@"); return 0 ;;
      -*) die "unknown option $1 (the command goes after --)" ;;
      *) cmd=("$@"); return 0 ;;  # the command may also start at the first non-option
    esac
  done
}

need_image() {
  if [ ! -f "$NODE/stamp" ] || [ ! -f "$NODE/rootfs.img" ]; then
    log "no guest image yet: building it"
    cmd_build
  fi
  local want; want=$(recipe | sha256sum | cut -d' ' -f1)
  [ "$(cat "$NODE/stamp")" = "$want" ] || log "note: the image is out of date (run: bash scripts/arm64_node.sh build)"
  command -v qemu-system-aarch64 >/dev/null || ensure_host_pkgs
}

# Write the command files for one command into dir $1.
write_cmd() {
  local d=$1 cwd a
  cwd=$(pwd -P)
  case "$cwd/" in "$ROOT"/*) ;; *) cwd=$ROOT ;; esac
  mkdir -p "$d"
  printf '%s\n' "$cwd" >"$d/cwd"
  { printf 'exec'; for a in "${cmd[@]}"; do printf ' %q' "$a"; done; printf '\n'; } >"$d/cmd"
  : >"$d/env"
  for a in "${envs[@]}"; do printf '%s=%q\n' "${a%%=*}" "${a#*=}" >>"$d/env"; done
  : >"$d/out"; : >"$d/err"
}

# qemu command line for a guest whose run share is $1, mode $2 (run|server).
qemu_args() {
  local rundir=$1 mode=$2 net="user,id=n0" f
  for f in "${fwds[@]}"; do net+=",hostfwd=tcp:127.0.0.1:${f%%:*}-:${f#*:}"; done
  local sm=passthrough
  [ "$(id -u)" -eq 0 ] || sm=none
  printf 'REPO=%q\nSHARED_NATIVE=%q\nMODE=%s\nNOFILE_SOFT=%s\nNOFILE_HARD=%s\n' "$ROOT" "$NODE/native" "$mode" \
    "$(ulimit -Sn)" "$(ulimit -Hn)" >"$rundir/config"
  mkdir -p "$NODE/native"
  rm -f "$rundir/localtime"
  [ -e /etc/localtime ] && cp -L /etc/localtime "$rundir/localtime"
  guest_init_script >"$rundir/init.sh"
  QEMU=(qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on -smp "$smp" -m "$mem"
    -nodefaults -display none -monitor none -no-reboot
    -kernel "$NODE/vmlinuz" -initrd "$NODE/initrd.img"
    -append "root=/dev/vda rw rootfstype=ext4 console=ttyAMA0 quiet loglevel=3 panic=-1 net.ifnames=0 random.trust_cpu=on init=/usr/local/sbin/mvx-guest-init"
    -drive "file=$NODE/rootfs.img,if=none,id=hd0,format=raw,snapshot=on" -device virtio-blk-pci,drive=hd0
    -fsdev "local,id=fs0,path=$ROOT,security_model=$sm" -device virtio-9p-pci,fsdev=fs0,mount_tag=mvxrepo
    -fsdev "local,id=fs1,path=$rundir,security_model=$sm" -device virtio-9p-pci,fsdev=fs1,mount_tag=mvxrun
    -netdev "$net" -device virtio-net-pci,netdev=n0,romfile=
    -device virtio-rng-pci
    -serial "file:$rundir/console.log")
}

# Stream $1 (out) and $2 (err) to stdout/stderr until status file $3 appears or pid $4 dies.
# Sets RC to the command's status, or 124 (timeout) / 125 (no status).
stream_until_done() {
  local out=$1 err=$2 status=$3 qpid=$4 deadline=$5
  local oo=0 eo=0 n done=0
  RC=125
  while :; do
    [ -e "$status" ] && done=1
    n=$(stat -c %s "$out"); if [ "$n" -gt $oo ]; then tail -c +$((oo+1)) "$out" | head -c $((n-oo)); oo=$n; fi
    n=$(stat -c %s "$err"); if [ "$n" -gt $eo ]; then tail -c +$((eo+1)) "$err" | head -c $((n-eo)) >&2; eo=$n; fi
    if [ $done = 1 ]; then RC=$(cat "$status"); return 0; fi
    if ! kill -0 "$qpid" 2>/dev/null; then
      [ -e "$status" ] && continue
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then RC=124; return 0; fi
    sleep 0.2
  done
}

QPID=""
RUNDIR=""
cleanup_run() {
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
    kill "$QPID" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QPID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$QPID" 2>/dev/null || true
  fi
  [ -n "$QPID" ] && wait "$QPID" 2>/dev/null || true
  QPID=""
  [ -n "$RUNDIR" ] && [ -z "${KEEP_RUNDIR:-}" ] && rm -rf "$RUNDIR"
  RUNDIR=""
}

show_console() {
  log "console log (last 25 lines of $1):"
  tail -25 "$1" 2>/dev/null | sed 's/^/  | /' >&2 || true
}

lock_qemu() {
  exec 9>"$NODE/qemu.lock"
  if ! flock -n 9; then
    log "another guest is running (one at a time); waiting"
    flock 9
  fi
}

cmd_run() {
  parse_opts "$@"
  [ ${#cmd[@]} -gt 0 ] || die "usage: arm64_node.sh run [--fwd H:G] [--timeout S] -- CMD..."
  need_image
  lock_qemu
  mkdir -p "$NODE/runs"
  RUNDIR=$(mktemp -d "$NODE/runs/run.XXXXXX")
  trap 'cleanup_run' EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated"; exit 143' TERM
  write_cmd "$RUNDIR"
  qemu_args "$RUNDIR" run
  local t0=$SECONDS
  # --pdeathsig: qemu dies with this script even if it is SIGKILLed.
  setpriv --pdeathsig KILL -- "${QEMU[@]}" </dev/null >"$RUNDIR/qemu.log" 2>&1 &
  QPID=$!
  stream_until_done "$RUNDIR/out" "$RUNDIR/err" "$RUNDIR/status" "$QPID" $((t0 + timeout))
  local rc=$RC
  if [ $rc = 124 ]; then
    log "timeout after ${timeout} s: killing the guest"
    show_console "$RUNDIR/console.log"
  elif [ ! -e "$RUNDIR/status" ]; then
    log "the guest stopped without reporting an exit status"
    cat "$RUNDIR/qemu.log" >&2
    show_console "$RUNDIR/console.log"
  else
    # Give the guest a moment to power itself off, then make sure qemu is gone.
    for _ in $(seq 50); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
  fi
  cleanup_run
  exit "$rc"
}

SRV=$NODE/server
server_pid() {
  local p
  [ -f "$SRV/qemu.pid" ] || return 1
  p=$(cat "$SRV/qemu.pid")
  kill -0 "$p" 2>/dev/null && grep -q qemu-system-aarch64 "/proc/$p/cmdline" 2>/dev/null && echo "$p"
}

cmd_start() {
  parse_opts "$@"
  if server_pid >/dev/null; then log "already running (pid $(server_pid))"; return 0; fi
  need_image
  mkdir -p "$SRV"
  rm -rf "${SRV:?}"/*
  mkdir -p "$SRV/queue"
  # The background guest holds the qemu lock (fd inherited by qemu) until it exits.
  exec 9>"$NODE/qemu.lock"
  flock -n 9 || { log "another guest is running (one at a time); waiting"; flock 9; }
  qemu_args "$SRV" server
  "${QEMU[@]}" -daemonize -pidfile "$SRV/qemu.pid" </dev/null >"$SRV/qemu.log" 2>&1 ||
    { cat "$SRV/qemu.log" >&2; die "qemu failed to start"; }
  exec 9>&-
  local t0=$SECONDS
  while [ ! -e "$SRV/ready" ]; do
    if ! server_pid >/dev/null; then show_console "$SRV/console.log"; die "the guest died while booting"; fi
    if [ $((SECONDS - t0)) -gt 120 ]; then show_console "$SRV/console.log"; cmd_stop; die "the guest did not become ready in 120 s"; fi
    sleep 0.2
  done
  log "started (pid $(server_pid)) in $((SECONDS - t0)) s; run commands with: bash scripts/arm64_node.sh exec -- CMD"
}

cmd_exec() {
  parse_opts "$@"
  [ ${#cmd[@]} -gt 0 ] || die "usage: arm64_node.sh exec [--timeout S] [-e N=V] -- CMD..."
  local qpid; qpid=$(server_pid) || die "no background guest (bash scripts/arm64_node.sh start)"
  local d; d=$(mktemp -d "$SRV/queue/$(date +%s%N).XXXX")
  write_cmd "$d"
  touch "$d/go"
  local t0=$SECONDS
  trap 'log "interrupted (the command goes on in the guest)"; exit 130' INT
  stream_until_done "$d/out" "$d/err" "$d/status" "$qpid" $((t0 + timeout))
  local rc=$RC
  if [ $rc = 124 ]; then log "timeout after ${timeout} s (the command goes on in the guest)";
  elif [ ! -e "$d/status" ]; then log "the background guest died"; show_console "$SRV/console.log"; fi
  [ -e "$d/status" ] && rm -rf "$d"
  exit "$rc"
}

cmd_stop() {
  local p
  p=$(server_pid) || { log "not running"; return 0; }
  touch "$SRV/stop"
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$p" 2>/dev/null; then
    # The guest loop may be busy with a command: power off hard.
    kill "$p" 2>/dev/null || true; sleep 1; kill -9 "$p" 2>/dev/null || true
  fi
  log "stopped"
}

cmd_status() {
  local p
  if p=$(server_pid); then echo "running (pid $p)"; else echo "not running"; return 1; fi
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  run) shift; cmd_run "$@" ;;
  start) shift; cmd_start "$@" ;;
  exec) shift; cmd_exec "$@" ;;
  stop) shift; cmd_stop ;;
  status) shift; cmd_status ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
