"""`python3 -m mvx doctor`: on this machine, and with pieces hidden from it (a PATH without the bench
tools; a seccomp filter, inherited over exec, that makes one syscall or ioctl fail)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What the default run needs (on x86_64 also IA32 emulation, for its i386 followers; n/a elsewhere).
X86_64 = os.uname().machine == "x86_64"
REQUIRED = {"native module", "Python packages", "ptrace", "seccomp filters", "seccomp user notification", "ADDFD",
            "pidfd_getfd", "process_vm_readv", "followers' namespaces"} | ({"IA32 emulation"} if X86_64 else set())
OPTIONAL = {"SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP", "OpenSSL (two-node TLS)", "kcmp", "aarch64 route", "variants x86_64", "variants i386",
            "variants aarch64", "in-process agent", "wrk", "strace", "taskset", "py-spy", "python-ptrace"} | (set() if X86_64 else {"IA32 emulation"})

# Runs the doctor as a child: under a seccomp filter first when asked (argv[1], JSON: the call, the errno
# it fails with, an ioctl request it is limited to), and as a child subreaper, so that any process the
# doctor left behind ends up here and is counted on stderr.
WRAPPER = r"""
import ctypes, errno, json, os, subprocess, sys, time
rule = json.loads(sys.argv[1])
if rule:
    import pyseccomp as sc
    f = sc.SyscallFilter(sc.ALLOW)
    f.add_arch(sc.Arch.X86)  # libseccomp kills the calls of an ABI it was not given: the i386 probe's
    args = [sc.Arg(1, sc.EQ, rule["request"])] if "request" in rule else []
    f.add_rule(sc.ERRNO(getattr(errno, rule["errno"])), rule["call"], *args)
    f.load()
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
r = subprocess.run([sys.executable, "-m", "mvx", "doctor", *sys.argv[2:]])
time.sleep(0.2)
left = 0
while True:
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    left += 1
    if pid == 0:  # one still running
        break
print(f"leftover processes: {left}", file=sys.stderr)
sys.exit(r.returncode)
"""


@pytest.fixture(scope="module", autouse=True)
def native_built():
    """The native module built (or found) with this PATH: the runs below may have no compiler on theirs."""
    from mvx.mechanics import native  # noqa: F401


def doctor(*args: str, rule: dict | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(rule), *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert "leftover processes: 0" in r.stderr, r.stderr
    return r


def lines(r: subprocess.CompletedProcess) -> dict[str, tuple[str, str]]:
    """check name -> (status, the rest of its line)."""
    out = {}
    for line in r.stdout.splitlines()[:-1]:
        status, rest = line[:8].strip(), line[9:]
        name, _, detail = rest.partition(": ")
        out[name.removesuffix(" (optional)")] = (status, detail)
    return out


def test_this_machine_has_everything_the_default_run_needs():
    r = doctor()
    assert r.returncode == 0, r.stdout + r.stderr
    got = lines(r)
    assert set(got) == REQUIRED | OPTIONAL, r.stdout
    for name in REQUIRED:
        assert got[name][0] == "ok", f"{name}: {got[name]}"
    for line in r.stdout.splitlines()[:-1]:  # one line per check; an optional one says so when missing
        assert line.startswith(("ok       ", "missing  ", "n/a      ")), line
        assert not line.startswith("missing") or "(optional)" in line, line
    assert r.stdout.splitlines()[-1].split(";")[0] == "mvx doctor: everything the default run needs is here"
    assert r.stderr.strip() == "leftover processes: 0"

    j = doctor("--json")
    assert j.returncode == 0
    data = json.loads(j.stdout)
    assert data["ok"] is True
    assert {c["name"]: c["status"] for c in data["checks"]} == {name: s for name, (s, _) in got.items()}
    assert {c["name"] for c in data["checks"] if c["required"]} == REQUIRED


def test_bench_tools_off_path_are_missing_but_not_needed():
    hidden = ("wrk", "strace")
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not any(os.access(os.path.join(d, tool), os.X_OK) for tool in hidden)]
    path = os.pathsep.join(dirs) or "/nonexistent"
    assert not any(shutil.which(tool, path=path) for tool in hidden)
    r = doctor(env={**os.environ, "PATH": path})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "missing  wrk (optional): not on PATH: `mvx bench` cannot load lighttpd" in r.stdout
    assert "missing  strace (optional): not on PATH: `mvx bench` refuses its strace rows" in r.stdout
    got = lines(r)
    assert all(got[name][0] == "ok" for name in REQUIRED), r.stdout
    assert r.stdout.splitlines()[-1].startswith("mvx doctor: everything the default run needs is here; ")


def test_without_python_ptrace_the_doctor_runs_and_says_what_it_disables(tmp_path):
    shadow = tmp_path / "ptrace"  # first on the path: `import ptrace` fails as on a machine without it
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('no python-ptrace here')\n")
    r = doctor(env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("missing  python-ptrace (optional): no python-ptrace here: divergence reports show no registers"
            in r.stdout), r.stdout


@pytest.mark.parametrize(("rule", "name", "detail", "needed"), [
    ({"call": "pidfd_getfd", "errno": "ENOSYS"}, "pidfd_getfd",
     "Function not implemented: monitors cannot duplicate a variant's fds: hybrid mode (the default) cannot start",
     True),
    ({"call": "process_vm_readv", "errno": "EPERM"}, "process_vm_readv",
     "Operation not permitted: no mode can read or write a variant's memory", True),
    ({"call": "ioctl", "request": 0x40182103, "errno": "EINVAL"}, "ADDFD",  # SECCOMP_IOCTL_NOTIF_ADDFD
     "SECCOMP_IOCTL_NOTIF_ADDFD (SEND): Invalid argument: hybrid mode cannot put an fd into a variant", True),
    ({"call": "ioctl", "request": 0x40082104, "errno": "EINVAL"},  # SECCOMP_IOCTL_NOTIF_SET_FLAGS
     "SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP",
     "SECCOMP_IOCTL_NOTIF_SET_FLAGS: Invalid argument: hybrid notifications wake the monitor and its variant", False),
], ids=["pidfd_getfd", "process_vm_readv", "addfd", "sync_wake_up"])
def test_a_hidden_feature_is_named_with_what_it_disables(rule, name, detail, needed):
    r = doctor(rule=rule)
    got = lines(r)
    assert got[name][0] == "missing" and got[name][1].startswith(detail), r.stdout
    # only that piece is missing of what the default run needs: the exit status is its doing
    assert [n for n in REQUIRED if got[n][0] != "ok"] == ([name] if needed else []), r.stdout
    assert r.returncode == (1 if needed else 0), r.stdout + r.stderr
    last = r.stdout.splitlines()[-1].split(";")[0]
    assert last == (f"mvx doctor: the default run needs {name}" if needed else
                    "mvx doctor: everything the default run needs is here"), last
