#!/usr/bin/env python3
"""Generate mvx/isa/archdata/{x86_64,i386,aarch64}.py from the kernel UAPI and libc headers.

Every number comes from the C compiler of the target ISA, never from parsing header text:
the preprocessor (-E -dM) only tells which macro names exist; their values, struct sizes and
field offsets are evaluated by compiling (-S, never running) generated probes in which each value
is an immediate operand of an asm statement, as the kernel's asm-offsets does. So aarch64 facts
come from aarch64-linux-gnu-gcc without qemu, and macro chains such as __NR3264_* or enum-backed
glibc macros resolve exactly as they would in a real build.

    python3 scripts/gen_archdata.py            # rewrite mvx/isa/archdata/*.py
    python3 scripts/gen_archdata.py --check    # exit 1 if the committed files are stale
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "mvx" / "isa" / "archdata"
REGEN = "python3 scripts/gen_archdata.py"


class GenError(Exception):
    """A one-line, actionable failure (missing compiler, probe that does not compile)."""


# --- targets -------------------------------------------------------------------------------------

ARCHES = {
    "x86_64": {
        "cc": ["gcc"],
        "pkg": "gcc",
        "audit": "AUDIT_ARCH_X86_64",
        "word": 8,
        "regs": "x86",
        # Host ISAs whose kernel runs this ISA's binaries natively (under ptrace, not emulation).
        "native_on": ["x86_64"],
    },
    "i386": {
        # gcc-multilib conflicts with the aarch64 cross compiler, so -m32 gets its <asm/...>
        # from a shim directory pointing at the bi-arch x86 UAPI headers.
        "cc": ["gcc", "-m32"],
        "pkg": "gcc, libc6-dev-i386 and lib32gcc-12-dev",
        "shim": True,
        "audit": "AUDIT_ARCH_I386",
        "word": 4,
        "regs": "x86",
        "native_on": ["i386", "x86_64"],  # the x86_64 kernel runs i386 through its compat entry
    },
    "aarch64": {
        "cc": ["aarch64-linux-gnu-gcc"],
        "pkg": "gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and linux-libc-dev-arm64-cross",
        "audit": "AUDIT_ARCH_AARCH64",
        "word": 8,
        "regs": "aarch64",
        "native_on": ["aarch64"],  # aarch64 builds under qemu-user are not variants (docs/DESIGN.md)
    },
}
X86_ASM_DIR = "/usr/include/x86_64-linux-gnu/asm"


def includes(headers: list[str]) -> str:
    return "".join(f"#include <{h}>\n" for h in headers)


# --- constants -----------------------------------------------------------------------------------

# Translation units whose macros are candidates. Kernel UAPI first: where the kernel and glibc both
# define a name, the kernel's value is what a syscall carries (e.g. O_LARGEFILE on x86_64).
KERNEL_HEADERS = [
    "linux/fcntl.h", "linux/eventpoll.h", "linux/mman.h", "asm/signal.h", "linux/time.h",
    "linux/random.h", "linux/fs.h", "linux/poll.h", "linux/stat.h", "linux/net.h", "linux/in.h",
    "linux/in6.h", "linux/tcp.h", "asm/socket.h", "linux/resource.h", "linux/prctl.h",
    "linux/futex.h", "linux/uio.h",
]
GLIBC_HEADERS = [
    "sys/socket.h", "netinet/in.h", "netinet/tcp.h", "sys/un.h", "limits.h", "fcntl.h", "sys/uio.h",
]
ERRNO_HEADERS = ["asm/errno.h"]

# Which names each unit contributes (full-match regexes).
KERNEL_FAMILIES = [
    r"O_\w+", r"AT_\w+", r"F_\w+", r"FD_CLOEXEC", r"EPOLL\w*", r"SOL_\w+", r"SO_\w+",
    r"IPPROTO_\w+", r"TCP_\w+", r"PROT_\w+", r"MAP_\w+", r"MADV_\w+", r"SIG[A-Z0-9]+",
    r"SIG_(BLOCK|UNBLOCK|SETMASK)", r"SA_\w+", r"CLOCK_\w+", r"GRND_\w+", r"SEEK_\w+",
    r"POLL[A-Z]+", r"S_IF\w+", r"RLIMIT_\w+", r"FUTEX_\w+", r"UIO_MAXIOV",
    r"PR_(SET|GET)_(NAME|PDEATHSIG|DUMPABLE|NO_NEW_PRIVS|SECCOMP|CHILD_SUBREAPER|TIMERSLACK)",
    r"PR_SET_PTRACER",
]
KERNEL_FAMILIES_BY_ARCH = {
    "x86_64": [r"ARCH_\w+"],
    "i386": [r"ARCH_\w+", r"SYS_\w+"],  # socketcall call numbers
    "aarch64": [],
}
EXTRA_HEADERS_BY_ARCH = {"x86_64": ["asm/prctl.h"], "i386": ["asm/prctl.h"], "aarch64": []}
GLIBC_FAMILIES = [
    r"AF_\w+", r"SOCK_\w+", r"MSG_\w+", r"SOL_\w+", r"SO_\w+", r"SHUT_\w+", r"IPPROTO_\w+",
    r"IOV_MAX", r"O_(ASYNC|FSYNC|RSYNC)",  # the kernel UAPI spells O_ASYNC as FASYNC
]
ERRNO_FAMILIES = [r"E[A-Z0-9]+"]
# Names a family regex catches that are not members of the family: stack sizes, a mask the kernel
# defines for aarch64 only, and SIGRTMAX, which the x86 UAPI cannot evaluate (_NSIG is kernel-only).
NOT_CONSTS = {"SIGSTKSZ", "MINSIGSTKSZ", "O_TMPFILE_MASK", "SIGRTMAX"}

# --- constants outside the families ---------------------------------------------------------------
# Constants the syscall specs name (mvx.isa.syscalls) that the families above do not collect: emitted as
# NEUTRAL_CONSTS, which fill gaps of CONSTS. Each name is evaluated by the ISA's compiler from the
# first unit that defines it, and must come out equal on every ISA (generate() checks it): the table
# is ISA-neutral by measurement, not by assumption. The name list is explicit because prefix
# families of the specs (Flags("STATX_"), Flags("RWF_")...) decode with exactly these names.
NEUTRAL_UNITS = [
    "#include <unistd.h>\n",
    "#include <linux/sched.h>\n",
    "#include <sys/eventfd.h>\n#include <sys/timerfd.h>\n",
    includes(["linux/time.h", "linux/memfd.h", "linux/fcntl.h", "linux/fadvise.h", "linux/falloc.h",
              "linux/wait.h", "linux/fs.h", "linux/mman.h", "linux/close_range.h", "linux/stat.h",
              "linux/inotify.h", "linux/eventpoll.h", "asm/signal.h", "asm/ioctls.h", "linux/ipc.h",
              "linux/sem.h", "linux/msg.h", "linux/shm.h", "linux/in.h", "linux/in6.h",
              "asm/socket.h"]),
    "#define _GNU_SOURCE\n" + includes(["fcntl.h", "sys/mount.h", "sys/mman.h", "sys/socket.h",
                                        "netinet/in.h", "netinet/tcp.h", "netinet/udp.h"]),
]
NEUTRAL_NAMES = [
    "R_OK", "W_OK", "X_OK", "F_OK",
    "CLONE_VM", "CLONE_FS", "CLONE_FILES", "CLONE_SIGHAND", "CLONE_PIDFD", "CLONE_PTRACE",
    "CLONE_VFORK", "CLONE_PARENT", "CLONE_THREAD", "CLONE_NEWNS", "CLONE_SYSVSEM", "CLONE_SETTLS",
    "CLONE_PARENT_SETTID", "CLONE_CHILD_CLEARTID", "CLONE_DETACHED", "CLONE_UNTRACED",
    "CLONE_CHILD_SETTID", "CLONE_NEWCGROUP", "CLONE_NEWUTS", "CLONE_NEWIPC", "CLONE_NEWUSER",
    "CLONE_NEWPID", "CLONE_NEWNET", "CLONE_IO",
    "EFD_SEMAPHORE", "EFD_CLOEXEC", "EFD_NONBLOCK",
    "TFD_TIMER_ABSTIME", "TFD_TIMER_CANCEL_ON_SET", "TIMER_ABSTIME", "ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF",
    "MFD_CLOEXEC", "MFD_ALLOW_SEALING", "MFD_HUGETLB", "MFD_NOEXEC_SEAL", "MFD_EXEC",
    "RENAME_NOREPLACE", "RENAME_EXCHANGE", "RENAME_WHITEOUT",
    "POSIX_FADV_NORMAL", "POSIX_FADV_RANDOM", "POSIX_FADV_SEQUENTIAL", "POSIX_FADV_WILLNEED",
    "POSIX_FADV_DONTNEED", "POSIX_FADV_NOREUSE",
    "FALLOC_FL_KEEP_SIZE", "FALLOC_FL_PUNCH_HOLE", "FALLOC_FL_COLLAPSE_RANGE", "FALLOC_FL_ZERO_RANGE",
    "FALLOC_FL_INSERT_RANGE", "FALLOC_FL_UNSHARE_RANGE",
    "WNOHANG", "WUNTRACED", "WSTOPPED", "WEXITED", "WCONTINUED", "WNOWAIT", "__WNOTHREAD", "__WALL",
    "__WCLONE", "P_ALL", "P_PID", "P_PGID", "P_PIDFD",
    "LOCK_SH", "LOCK_EX", "LOCK_NB", "LOCK_UN",
    "RWF_HIPRI", "RWF_DSYNC", "RWF_SYNC", "RWF_NOWAIT", "RWF_APPEND",
    "MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP",
    "MS_ASYNC", "MS_INVALIDATE", "MS_SYNC",
    "MNT_FORCE", "MNT_DETACH", "MNT_EXPIRE", "UMOUNT_NOFOLLOW",
    "CLOSE_RANGE_UNSHARE", "CLOSE_RANGE_CLOEXEC",
    "SPLICE_F_MOVE", "SPLICE_F_NONBLOCK", "SPLICE_F_MORE", "SPLICE_F_GIFT",
    "STATX_TYPE", "STATX_MODE", "STATX_NLINK", "STATX_UID", "STATX_GID", "STATX_ATIME",
    "STATX_MTIME", "STATX_CTIME", "STATX_INO", "STATX_SIZE", "STATX_BLOCKS", "STATX_BASIC_STATS",
    "STATX_BTIME", "STATX_MNT_ID", "STATX_DIOALIGN",
    "IN_ACCESS", "IN_MODIFY", "IN_ATTRIB", "IN_CLOSE_WRITE", "IN_CLOSE_NOWRITE", "IN_OPEN",
    "IN_MOVED_FROM", "IN_MOVED_TO", "IN_CREATE", "IN_DELETE", "IN_DELETE_SELF", "IN_MOVE_SELF",
    "IN_ONLYDIR", "IN_DONT_FOLLOW", "IN_EXCL_UNLINK", "IN_MASK_CREATE", "IN_MASK_ADD", "IN_ISDIR",
    "IN_ONESHOT",
    "EPOLL_CTL_ADD", "EPOLL_CTL_DEL", "EPOLL_CTL_MOD", "EPOLL_CLOEXEC",
    "SIG_BLOCK", "SIG_UNBLOCK", "SIG_SETMASK",
    "TCGETS", "TCSETS", "TCSETSW", "TCSETSF", "TCXONC", "TCFLSH", "TIOCSCTTY", "TIOCGPGRP",
    "TIOCSPGRP", "TIOCOUTQ", "TIOCGWINSZ", "TIOCSWINSZ", "FIONREAD", "TIOCNOTTY", "FIONBIO",
    "FIONCLEX", "FIOCLEX", "FIOASYNC", "TIOCGPTN", "TIOCSPTLCK",
    "IPC_RMID", "IPC_SET", "IPC_STAT", "IPC_INFO", "GETPID", "GETVAL", "GETALL", "GETNCNT",
    "GETZCNT", "SETVAL", "SETALL", "SEM_STAT", "SEM_INFO", "MSG_STAT", "MSG_INFO", "SHM_LOCK",
    "SHM_UNLOCK", "SHM_STAT", "SHM_INFO",
    "SOL_SOCKET", "SOL_IP", "SOL_TCP", "SOL_UDP", "SOL_IPV6",
    "SCM_RIGHTS", "SCM_CREDENTIALS",
    "IPPROTO_IP", "IPPROTO_TCP", "IPPROTO_UDP", "IPPROTO_IPV6",
]
# Truly ISA-neutral values in no header of any ISA installed here: the memfd exec-sealing flags came
# with Linux 6.3 (include/uapi/linux/memfd.h), newer than the UAPI headers of this toolchain. Used
# only where no unit defines the name; a header that does define it wins (and must agree).
NEUTRAL_DECLARED = {"MFD_NOEXEC_SEAL": 0x0008, "MFD_EXEC": 0x0010}

# Kernel facts as the kernel (not libc) sees them, emitted as KERNEL_CONSTS.
# O_LARGEFILE: the UAPI value alone (glibc's <fcntl.h> says 0 on 64-bit ISAs); mvx drops it from
# open flags on every ISA, since i386 glibc sets it on every open and 64-bit callers never need it.
KERNEL_UAPI_CONSTS = [("#include <linux/fcntl.h>\n", ["O_LARGEFILE"])]
# The restart codes of include/linux/errno.h: kernel-internal, not UAPI (so no header can be
# compiled for them), the same on every ISA. A syscall-exit stop may show them in the return
# register when a signal interrupted the call and the kernel is about to make it again.
KERNEL_DECLARED = {
    "ERESTARTSYS": 512, "ERESTARTNOINTR": 513, "ERESTARTNOHAND": 514, "ERESTART_RESTARTBLOCK": 516,
}

# --- layouts -------------------------------------------------------------------------------------
# Field suffixes: "*" pointer, "[]" array, "{}" struct/union (never signed), "[*]" flexible array
# (size 0). Each unit is compiled on its own so kernel and glibc definitions never meet.

_STAT_FIELDS = [
    "st_dev", "st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
    "st_blksize", "st_blocks", "st_atime", "st_atime_nsec", "st_mtime", "st_mtime_nsec",
    "st_ctime", "st_ctime_nsec",
]
_SOCK_ADDRS = [
    ("sockaddr", "struct sockaddr", ["sa_family", "sa_data[]"]),
    ("sockaddr_in", "struct sockaddr_in", ["sin_family", "sin_port", "sin_addr{}", "sin_zero[]"]),
    ("sockaddr_in6", "struct sockaddr_in6",
     ["sin6_family", "sin6_port", "sin6_flowinfo", "sin6_addr{}", "sin6_scope_id"]),
    ("sockaddr_un", "struct sockaddr_un", ["sun_family", "sun_path[]"]),
]
LAYOUT_UNITS = [
    ("#include <linux/eventpoll.h>\n", [
        ("epoll_event", "struct epoll_event", ["events", "data"]),
    ]),
    ("#include <linux/uio.h>\n", [
        ("iovec", "struct iovec", ["iov_base*", "iov_len"]),
    ]),
    # The user-space msghdr/mmsghdr/cmsghdr and sockaddr_* are exactly the kernel's user_msghdr
    # etc. (the kernel's own definitions are not exported in the UAPI).
    ("#define _GNU_SOURCE\n#include <sys/socket.h>\n#include <netinet/in.h>\n#include <sys/un.h>\n", [
        ("msghdr", "struct msghdr", ["msg_name*", "msg_namelen", "msg_iov*", "msg_iovlen",
                                     "msg_control*", "msg_controllen", "msg_flags"]),
        ("mmsghdr", "struct mmsghdr", ["msg_hdr{}", "msg_len"]),
        ("cmsghdr", "struct cmsghdr", ["cmsg_len", "cmsg_level", "cmsg_type"]),
        ("ucred", "struct ucred", ["pid", "uid", "gid"]),
    ] + _SOCK_ADDRS),
    ("#include <linux/time.h>\n#include <linux/time_types.h>\n", [
        ("timespec", "struct __kernel_old_timespec", ["tv_sec", "tv_nsec"]),
        ("timespec64", "struct __kernel_timespec", ["tv_sec", "tv_nsec"]),
        ("timeval", "struct __kernel_old_timeval", ["tv_sec", "tv_usec"]),
        ("itimerspec", "struct itimerspec", ["it_interval{}", "it_value{}"]),
        ("itimerspec64", "struct __kernel_itimerspec", ["it_interval{}", "it_value{}"]),
        ("itimerval", "struct __kernel_old_itimerval", ["it_interval{}", "it_value{}"]),
        ("timezone", "struct timezone", ["tz_minuteswest", "tz_dsttime"]),
    ]),
    ("#include <asm/stat.h>\n", [
        ("stat", "struct stat", _STAT_FIELDS),
    ]),
    ("#include <linux/stat.h>\n", [
        ("statx", "struct statx", [
            "stx_mask", "stx_blksize", "stx_attributes", "stx_nlink", "stx_uid", "stx_gid",
            "stx_mode", "stx_ino", "stx_size", "stx_blocks", "stx_attributes_mask", "stx_atime{}",
            "stx_btime{}", "stx_ctime{}", "stx_mtime{}", "stx_rdev_major", "stx_rdev_minor",
            "stx_dev_major", "stx_dev_minor", "stx_mnt_id"]),
        ("statx_timestamp", "struct statx_timestamp", ["tv_sec", "tv_nsec"]),
    ]),
    ("#include <linux/poll.h>\n", [
        ("pollfd", "struct pollfd", ["fd", "events", "revents"]),
    ]),
    ("#include <linux/sysinfo.h>\n", [
        ("sysinfo", "struct sysinfo", [
            "uptime", "loads[]", "totalram", "freeram", "sharedram", "bufferram", "totalswap",
            "freeswap", "procs", "totalhigh", "freehigh", "mem_unit"]),
    ]),
    ("#include <linux/resource.h>\n", [
        ("rlimit", "struct rlimit", ["rlim_cur", "rlim_max"]),
        ("rlimit64", "struct rlimit64", ["rlim_cur", "rlim_max"]),
        ("rusage", "struct rusage", [
            "ru_utime{}", "ru_stime{}", "ru_maxrss", "ru_ixrss", "ru_idrss", "ru_isrss",
            "ru_minflt", "ru_majflt", "ru_nswap", "ru_inblock", "ru_oublock", "ru_msgsnd",
            "ru_msgrcv", "ru_nsignals", "ru_nvcsw", "ru_nivcsw"]),
    ]),
    ("#include <linux/utsname.h>\n", [
        ("utsname", "struct new_utsname", [
            "sysname[]", "nodename[]", "release[]", "version[]", "machine[]", "domainname[]"]),
    ]),
    # Not exported by the UAPI: verbatim copies of the kernel's definitions (include/linux/dirent.h;
    # the rt_sigaction struct of include/linux/signal_types.h with the 64-signal sigset_t, which
    # on i386 is compat_sigaction). Compiled per ISA, so sizes and alignment are still the ABI's.
    (("#include <linux/types.h>\n"
     "struct linux_dirent64 { __u64 d_ino; __s64 d_off; unsigned short d_reclen;\n"
     "  unsigned char d_type; char d_name[]; };\n"
     "typedef struct { unsigned long sig[64 / (8 * sizeof(unsigned long))]; } mvx_sigset_t;\n"
     "struct mvx_sigaction { void *sa_handler; unsigned long sa_flags; void *sa_restorer;\n"
     "  mvx_sigset_t sa_mask; };\n"), [
        ("linux_dirent64", "struct linux_dirent64",
         ["d_ino", "d_off", "d_reclen", "d_type", "d_name[*]"]),
        ("sigset", "mvx_sigset_t", ["sig[]"]),
        ("sigaction", "struct mvx_sigaction", ["sa_handler*", "sa_flags", "sa_restorer*", "sa_mask{}"]),
    ]),
]
_STATFS_FIELDS = ["f_type", "f_bsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
                  "f_fsid{}", "f_namelen", "f_frsize", "f_flags"]
_FLOCK_FIELDS = ["l_type", "l_whence", "l_start", "l_len", "l_pid"]
LAYOUT_UNITS += [
    ("#include <linux/sched.h>\n#include <linux/openat2.h>\n", [
        ("clone_args", "struct clone_args", [
            "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
            "set_tid", "set_tid_size", "cgroup"]),
        ("open_how", "struct open_how", ["flags", "mode", "resolve"]),
    ]),
    ("#include <linux/fcntl.h>\n", [("flock", "struct flock", _FLOCK_FIELDS),
                                     ("f_owner_ex", "struct f_owner_ex", ["type", "pid"])]),
    ("#include <asm/termios.h>\n", [
        ("winsize", "struct winsize", ["ws_row", "ws_col", "ws_xpixel", "ws_ypixel"]),
        ("termios", "struct termios", ["c_iflag", "c_oflag", "c_cflag", "c_lflag", "c_line", "c_cc[]"]),
    ]),
    ("#include <linux/times.h>\n", [
        ("tms", "struct tms", ["tms_utime", "tms_stime", "tms_cutime", "tms_cstime"]),
    ]),
    # glibc's struct statfs is the kernel's (the UAPI spells the 32-bit word fields __u32; glibc's
    # signed __fsword_t is how mvx decodes f_type, f_bsize, f_namelen, f_frsize and f_flags).
    ("#define _GNU_SOURCE\n#include <sys/statfs.h>\n", [
        ("statfs", "struct statfs", _STATFS_FIELDS),
    ]),
    # Not exported by the UAPI: the kernel's struct linux_dirent (fs/readdir.c) verbatim but for
    # d_off, an opaque cookie that mvx decodes signed like linux_dirent64's.
    (("struct linux_dirent { unsigned long d_ino; long d_off; unsigned short d_reclen;\n"
      "  char d_name[]; };\n"), [
        ("linux_dirent", "struct linux_dirent", ["d_ino", "d_off", "d_reclen", "d_name[*]"]),
    ]),
]
LAYOUT_UNITS_BY_ARCH = {
    "i386": [
        ("#include <asm/stat.h>\n", [
            ("stat64", "struct stat64", _STAT_FIELDS),
            ("__old_kernel_stat", "struct __old_kernel_stat", [
                "st_dev", "st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
                "st_atime", "st_mtime", "st_ctime"]),
        ]),
        ("#include <linux/fcntl.h>\n", [("flock64", "struct flock64", _FLOCK_FIELDS)]),
        ("#define _GNU_SOURCE\n#include <sys/statfs.h>\n", [
            ("statfs64", "struct statfs64", _STATFS_FIELDS),
        ]),
        # The kernel's struct old_sigaction (arch/x86/include/asm/signal.h, not UAPI) verbatim,
        # with the handler and restorer as plain pointers.
        (("struct old_sigaction { void *sa_handler; unsigned long sa_mask; unsigned long sa_flags;\n"
          "  void *sa_restorer; };\n"), [
            ("old_sigaction", "struct old_sigaction",
             ["sa_handler*", "sa_mask", "sa_flags", "sa_restorer*"]),
        ]),
    ],
}

X86_REGS_UNIT = "#include <sys/user.h>\n", "struct user_regs_struct", [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
    "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
    "es", "fs", "gs"]
AARCH64_REGS_UNIT = "#include <asm/ptrace.h>\n", "struct user_pt_regs", ["sp", "pc", "pstate"]

# --- compiling probes ----------------------------------------------------------------------------

PROBE_MACROS = r"""
#define MVX_INTLIKE(x) (__builtin_classify_type(x) >= 1 && __builtin_classify_type(x) <= 4)
#define MVX_V(x) ((unsigned long long)__builtin_choose_expr(MVX_INTLIKE(x), (x), 0))
#define MVX_NEG(x) __builtin_choose_expr(MVX_INTLIKE(x), (x) < 0, 0)
#define MVX_CONST(tag, name, x) __asm__ volatile("\n@@" tag " " name " %c0 %c1 %c2 %c3" :: \
    "i"((unsigned)(MVX_V(x) >> 32)), "i"((unsigned)MVX_V(x)), "i"(MVX_NEG(x)), \
    "i"(MVX_INTLIKE(x)));
#define MVX_SIGNED(x) ((__typeof__(x))-1 < (__typeof__(x))0)
#define MVX_FIELD(sname, T, f, sz, sg) __asm__ volatile("\n@@F " sname " " #f " %c0 %c1 %c2" :: \
    "i"(__builtin_offsetof(T, f)), "i"(sz), "i"(sg));
#define MVX_SIZE(sname, T) __asm__ volatile("\n@@S " sname " %c0" :: "i"(sizeof(T)));
"""
MARK = re.compile(r"^\s*@@(\w) (.*)$")


class Target:
    """One ISA's compiler command line (with the i386 <asm> shim when needed)."""

    def __init__(self, arch: str, tmp: Path, tag: str = ""):
        self.arch = arch
        spec = ARCHES[arch]
        self.spec = spec
        self.tmp = tmp / (arch + tag)
        self.tmp.mkdir()
        self.cc = list(spec["cc"])
        exe = shutil.which(self.cc[0])
        if exe is None:
            raise GenError(f"{arch}: compiler {self.cc[0]!r} not found (install {spec['pkg']})")
        if spec.get("shim"):
            shim = self.tmp / "shim"
            shim.mkdir()
            (shim / "asm").symlink_to(X86_ASM_DIR)
            self.cc += ["-I", str(shim)]
        self.n = 0

    def _run(self, args: list[str], src: str) -> subprocess.CompletedProcess:
        self.n += 1
        path = self.tmp / f"probe{self.n}.c"
        path.write_text(src)
        cmd = self.cc + ["-w", "-fmax-errors=0", "-o", "-"] + args + [str(path)]
        env = dict(os.environ, LC_ALL="C")
        return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False), path

    def macros(self, prelude: str) -> dict[str, str]:
        """Object-like macros visible after `prelude`: name -> body (bodies are not evaluated)."""
        res, _ = self._run(["-E", "-dM"], prelude)
        if res.returncode != 0:
            raise GenError(f"{self.arch}: cannot preprocess headers ({first_error(res.stderr)}); "
                           f"install {self.spec['pkg']}")
        out = {}
        for line in res.stdout.splitlines():
            m = re.match(r"#define (\w+) (.+)$", line)
            if m:  # "#define F(x) ..." and empty bodies do not match
                out[m.group(1)] = m.group(2)
        return out

    def assemble(self, src: str) -> tuple[subprocess.CompletedProcess, Path]:
        return self._run(["-S", "-O2"], src)

    def evaluate(self, prelude: str, names: list[str]) -> dict[str, int]:
        """Integer values of `names` as the compiler sees them; non-integer or non-constant
        macros (types, strings, function calls) are dropped: each candidate sits on its own
        line, and lines the compiler complains about are removed until the probe compiles."""
        names = sorted(names)
        while True:
            lines = [prelude, PROBE_MACROS, "void mvx_probe(void) {"]
            first = len("\n".join(lines).splitlines()) + 1
            lines += [f'MVX_CONST("C", "{n}", {n})' for n in names]
            lines.append("}")
            res, path = self.assemble("\n".join(lines) + "\n")
            if res.returncode == 0:
                break
            bad = {int(m) for m in re.findall(re.escape(path.name) + r":(\d+):", res.stderr)}
            drop = {names[i - first] for i in bad if 0 <= i - first < len(names)}
            if not drop:
                raise GenError(f"{self.arch}: constant probe does not compile: "
                               f"{first_error(res.stderr)}")
            names = [n for n in names if n not in drop]
        values = {}
        for kind, rest in marks(res.stdout):
            name, hi, lo, neg, intlike = rest.split()
            if kind != "C" or intlike != "1":
                continue
            v = ((int(hi) & 0xFFFFFFFF) << 32) | (int(lo) & 0xFFFFFFFF)
            if neg == "1":
                v -= 1 << 64
            values[name] = v
        return values

    def layouts(self, prelude: str, structs) -> dict[str, tuple[int, dict]]:
        body = []
        for sname, ctype, fields in structs:
            body.append(f'MVX_SIZE("{sname}", {ctype})')
            for spec in fields:
                f, kind = split_field(spec)
                member = f"((({ctype} *)0)->{f})"
                size = "0" if kind == "[*]" else f"sizeof{member}"
                signed = f"MVX_SIGNED{member}" if kind == "" else "0"
                body.append(f'MVX_FIELD("{sname}", {ctype}, {f}, {size}, {signed})')
        src = prelude + PROBE_MACROS + "void mvx_probe(void) {\n" + "\n".join(body) + "\n}\n"
        res, _ = self.assemble(src)
        if res.returncode != 0:
            raise GenError(f"{self.arch}: layout probe does not compile: {first_error(res.stderr)}")
        out: dict[str, tuple[int, dict]] = {}
        fields: dict[str, dict] = {}
        for kind, rest in marks(res.stdout):
            parts = rest.split()
            if kind == "S":
                out[parts[0]] = int(parts[1])
                fields[parts[0]] = {}
            elif kind == "F":
                sname, f, off, size, sg = parts
                fields[sname][f] = (int(off), int(size), sg == "1")
        return {s: (out[s], fields[s]) for s in out}


def split_field(spec: str) -> tuple[str, str]:
    for suffix in ("[*]", "[]", "{}", "*"):
        if spec.endswith(suffix):
            return spec[: -len(suffix)], suffix
    return spec, ""


def marks(asm: str):
    for line in asm.splitlines():
        m = MARK.match(line)
        if m:
            yield m.group(1), m.group(2)


def first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if "error" in line or "fatal" in line:
            return re.sub(r"^\S*/", "", line.strip())
    return stderr.strip().splitlines()[0] if stderr.strip() else "unknown error"


# --- per-arch tables -----------------------------------------------------------------------------

def gen_syscalls(t: Target) -> dict[int, str]:
    prelude = "#include <asm/unistd.h>\n"
    macros = t.macros(prelude)
    # __NR_syscalls is a count and __NR_arch_specific_syscall a range base, not syscalls.
    skip = {"__NR_syscalls", "__NR_arch_specific_syscall"}
    cands = [n for n in macros if n.startswith("__NR_") and n not in skip]
    values = t.evaluate(prelude, cands)
    if len(values) != len(cands):
        missing = sorted(set(cands) - set(values))
        raise GenError(f"{t.arch}: syscall numbers that do not evaluate: {' '.join(missing[:8])}")
    table: dict[int, str] = {}
    for name, nr in sorted(values.items()):
        if nr in table:
            raise GenError(f"{t.arch}: syscall {nr} is both {table[nr]} and {name[5:]}")
        table[nr] = name[5:]
    return table


def gen_consts(t: Target) -> dict[str, int]:
    arch = t.arch
    units = [
        (includes(ERRNO_HEADERS), ERRNO_FAMILIES),
        (includes(KERNEL_HEADERS + EXTRA_HEADERS_BY_ARCH[arch]),
         KERNEL_FAMILIES + KERNEL_FAMILIES_BY_ARCH[arch]),
        ("#define _GNU_SOURCE\n" + includes(GLIBC_HEADERS), GLIBC_FAMILIES),
    ]
    consts: dict[str, int] = {}
    for prelude, families in units:
        rx = re.compile("|".join(f"(?:{f})" for f in families))
        macros = t.macros(prelude)
        cands = [n for n in macros if rx.fullmatch(n) and n not in consts and n not in NOT_CONSTS]
        for name, v in t.evaluate(prelude, cands).items():
            consts.setdefault(name, v)
    return consts


def gen_neutral(t: Target) -> dict[str, int]:
    out: dict[str, int] = {}
    for prelude in NEUTRAL_UNITS:
        left = [n for n in NEUTRAL_NAMES if n not in out]
        out.update(t.evaluate(prelude, left))
    for name, v in NEUTRAL_DECLARED.items():
        out.setdefault(name, v)
    missing = [n for n in NEUTRAL_NAMES if n not in out]
    if missing:
        raise GenError(f"{t.arch}: neutral constants in no header: {' '.join(missing[:8])}")
    return out


def gen_kernel(t: Target) -> dict[str, int]:
    out = dict(KERNEL_DECLARED)
    for prelude, names in KERNEL_UAPI_CONSTS:
        values = t.evaluate(prelude, names)
        if set(values) != set(names):
            raise GenError(f"{t.arch}: kernel constants that do not evaluate: "
                           f"{' '.join(sorted(set(names) - set(values)))}")
        out.update(values)
    return out


def gen_layouts(t: Target) -> dict[str, tuple[int, dict]]:
    out = {}
    for prelude, structs in LAYOUT_UNITS + LAYOUT_UNITS_BY_ARCH.get(t.arch, []):
        out.update(t.layouts(prelude, structs))
    return out


def gen_regs(t: Target, host: Target) -> tuple[dict[str, int], int]:
    if t.spec["regs"] == "x86":
        # A 64-bit tracer sees i386 tracees through the 64-bit user_regs_struct too.
        prelude, ctype, regs = X86_REGS_UNIT
        lay = host.layouts(prelude, [("regs", ctype, regs)])["regs"]
        return {r: lay[1][r][0] for r in regs}, lay[0]
    prelude, ctype, regs = AARCH64_REGS_UNIT
    lay = t.layouts(prelude, [("regs", ctype, ["regs[]"] + regs)])["regs"]
    base, size, _ = lay[1]["regs"]
    out = {f"x{i}": base + i * (size // 31) for i in range(31)}
    out.update({r: lay[1][r][0] for r in regs})
    return out, lay[0]


def gen_arch(arch: str, tmp: Path) -> str:
    t = Target(arch, tmp)
    host = Target("x86_64", tmp, "-host") if arch == "i386" else t
    audit_macros = t.macros("#include <linux/audit.h>\n")
    audit = t.evaluate("#include <linux/audit.h>\n", [ARCHES[arch]["audit"]])[ARCHES[arch]["audit"]]
    assert ARCHES[arch]["audit"] in audit_macros
    word = t.evaluate("", ["sizeof(long)"]).get("sizeof(long)")
    if word != ARCHES[arch]["word"]:
        raise GenError(f"{arch}: sizeof(long) is {word}, expected {ARCHES[arch]['word']}")
    syscalls = gen_syscalls(t)
    consts = gen_consts(t)
    layouts = gen_layouts(t)
    regs, regset_size = gen_regs(t, host)
    neutral = gen_neutral(t)
    kernel = gen_kernel(t)
    text = render(arch, audit, word, syscalls, consts, layouts, regs, regset_size, neutral, kernel)
    return text, neutral


def render(arch, audit, word, syscalls, consts, layouts, regs, regset_size, neutral, kernel) -> str:
    cc = " ".join(ARCHES[arch]["cc"])
    regsrc = ("<sys/user.h> struct user_regs_struct of the x86_64 gcc" if ARCHES[arch]["regs"] == "x86"
              else "<asm/ptrace.h> struct user_pt_regs")
    o = [
        f"# Generated by scripts/gen_archdata.py from the Linux UAPI and glibc headers via `{cc}`; do not edit.",
        f"# Values are evaluated by compiling probes; registers from {regsrc}.",
        f'"""Per-ISA facts for {arch}: syscall numbers, constants, kernel-ABI struct layouts, registers."""',
        "",
        f"AUDIT_ARCH = 0x{audit:08X}",
        f"WORD_SIZE = {word}",
        f"REGSET_SIZE = {regset_size}",
        f"NATIVE_ON = {tuple(sorted(ARCHES[arch]['native_on']))!r}  # host ISAs running it natively",
        "",
        "SYSCALLS = {",
    ]
    o += [f"    {nr}: {name!r}," for nr, name in sorted(syscalls.items())]
    o += ["}", "", "CONSTS = {"]
    o += [f"    {name!r}: {v}," for name, v in sorted(consts.items())]
    o += ["}", "", "# Constants outside the families, equal on every ISA (gaps of CONSTS).",
          "NEUTRAL_CONSTS = {"]
    o += [f"    {name!r}: {v}," for name, v in sorted(neutral.items())]
    o += ["}", "", "# As the kernel sees them: UAPI-only values and kernel-internal codes.",
          "KERNEL_CONSTS = {"]
    o += [f"    {name!r}: {v}," for name, v in sorted(kernel.items())]
    o += ["}", "", "LAYOUTS = {"]
    for sname, (size, fields) in sorted(layouts.items()):
        o.append(f"    {sname!r}: ({size}, {{")
        for f, (off, fsize, sg) in sorted(fields.items(), key=lambda kv: (kv[1][0], kv[0])):
            o.append(f"        {f!r}: ({off}, {fsize}, {sg}),")
        o.append("    }),")
    o += ["}", "", "REGS = {"]
    o += [f"    {r!r}: {off}," for r, off in sorted(regs.items(), key=lambda kv: (kv[1], kv[0]))]
    o += ["}", ""]
    return "\n".join(o)


def generate(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="mvx-archdata-") as tmp,
          concurrent.futures.ThreadPoolExecutor(len(ARCHES)) as pool):
        futs = {a: pool.submit(gen_arch, a, Path(tmp)) for a in ARCHES}
        results = {a: f.result() for a, f in futs.items()}
    texts = {a: text for a, (text, _) in results.items()}
    first, *rest = ARCHES
    for a in rest:
        for name, v in results[a][1].items():
            if results[first][1].get(name) != v:
                raise GenError(f"neutral constant {name} is {v} on {a} but "
                               f"{results[first][1].get(name)} on {first}")
    paths = []
    for arch, text in texts.items():
        p = out_dir / f"{arch}.py"
        p.write_text(text)
        paths.append(p)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary directory and fail if mvx/isa/archdata differs")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="output directory (default: mvx/isa/archdata)")
    args = ap.parse_args(argv)
    try:
        if args.check:
            with tempfile.TemporaryDirectory(prefix="mvx-archcheck-") as tmp:
                stale = []
                for p in generate(Path(tmp)):
                    mine = args.out / p.name
                    if not mine.exists() or mine.read_text() != p.read_text():
                        stale.append(p.name)
            if stale:
                print(f"gen_archdata: {', '.join(stale)} out of date in {args.out}; run: {REGEN}",
                      file=sys.stderr)
                return 1
            print("gen_archdata: mvx/isa/archdata is up to date")
            return 0
        for p in generate(args.out):
            print(f"wrote {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}")
        return 0
    except GenError as e:
        print(f"gen_archdata: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
