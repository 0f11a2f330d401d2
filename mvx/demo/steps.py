"""A short demonstration of what mvx does today (`python3 -m mvx.demo`, or `just demo`).

Five steps, each running real `python3 -m mvx ...` commands (printed before they run):

1. `mvx syscalls`: accept on x86_64 (accept4, nr 288) and on i386 (socketcall, nr 102, demultiplexed)
   map to the same canonical accept4.
2. `mvx trace`: the x86_64 and the i386 builds of epoll_server serve one client each; their canonical
   traces are compared line by line.
3. The attack: a payload made for the x86_64 vuln_server is sent to the x86_64 and to the i386 build,
   each under `mvx trace`. The first is hijacked, the second crashes: the variants diverge.
4. `mvx run`: epoll_server as an x86_64 leader with an i386 follower, then the reverse; a client
   gets its reply from the leader while every synced call of the follower is checked.
5. The attack under `mvx run`: the divergence is caught and every variant stopped before the
   hijacked build prints PWNED or creates its marker file.

Everything runs on 127.0.0.1 with bounded timeouts; every process started here is killed before the
demo ends. Exit 0 when everything behaved as described, 1 otherwise.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from mvx.demo import lighttpd

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ROOT / "build" / "variants"
ARCHES = ["x86_64", "i386"]  # traceable on an x86_64 machine (aarch64 runs under qemu-user)
ONLY = "accept4,read,write,close,epoll_pwait"
REPLY = b"Hi, how are you.\n"
START_TIMEOUT = 15.0  # first run may compile the native module
IO_TIMEOUT = 5.0
EXIT_TIMEOUT = 10.0
WIDTH = 100


class DemoFailure(Exception):
    """Something did not behave as the demo says it does (one line)."""


def python_shown() -> str:
    """How to write the running interpreter in a printed command line."""
    found = shutil.which("python3")
    try:
        if found and os.path.samefile(found, sys.executable):
            return "python3"
    except OSError:
        pass
    return sys.executable


PY = python_shown()


def rel(path: Path | str) -> str:
    p = Path(path)
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def headline(text: str) -> None:
    print()
    print("=" * WIDTH)
    print(text)
    print("=" * WIDTH, flush=True)


def say(text: str) -> None:
    paras = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    print()
    print("\n\n".join(textwrap.fill(p, WIDTH) for p in paras if p))
    print(flush=True)


def show_cmd(argv: list[str], env: dict[str, str] | None = None) -> None:
    shown = [PY if a == sys.executable else rel(a) if a.startswith(str(ROOT)) else a for a in argv]
    prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
    print(f"$ {prefix}{shlex.join(shown)}", flush=True)


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").split("\n"))


def mvx(*args: str) -> list[str]:
    return [sys.executable, "-m", "mvx", *args]


def run_shown(argv: list[str], timeout: float = 30.0) -> str:
    """Run a short command, print its output indented; return the output."""
    show_cmd(argv)
    try:
        r = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DemoFailure(f"`{shlex.join(argv[1:])}` did not finish within {timeout:.0f}s") from None
    if r.returncode != 0:
        err = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise DemoFailure(f"`{shlex.join(argv[1:])}` exited with {r.returncode}: {err}")
    return r.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Monitored:
    """One `mvx trace` run of a server in the background: its own session (so it can be killed as a
    group: the monitor and the traced program), stdout and stderr to files."""

    def __init__(self, argv: list[str], tmp: Path, tag: str, env: dict[str, str] | None = None):
        self.argv = argv
        self.stdout_path = tmp / f"{tag}.stdout"
        self.stderr_path = tmp / f"{tag}.stderr"
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        show_cmd(self.argv, self.extra_env)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env={**os.environ, **self.extra_env},
                                         start_new_session=True)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def last_error(self) -> str:
        """What mvx said last: a divergence's whole report (its block up to the forensics), else
        the last `mvx:` line, else the last line."""
        lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        if not lines:
            return "(nothing on stderr)"
        starts = [i for i, line in enumerate(lines) if line.startswith("mvx: DIVERGENCE")]
        if starts:
            block = lines[starts[-1]:]
            end = next((i for i, line in enumerate(block) if "where the variants were" in line), len(block))
            return "\n".join(block[:end])
        said = [line for line in lines if line.startswith("mvx:")]
        return said[-1] if said else lines[-1]

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if "listening" in self.stdout():
                return
            if self.proc.poll() is not None:
                raise DemoFailure(f"the server ended (status {self.proc.returncode}) before listening: "
                                  f"{self.last_error()}")
            time.sleep(0.02)
        raise DemoFailure(f"the server did not report `listening` within {START_TIMEOUT:.0f}s")

    def wait_exit(self) -> int:
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DemoFailure(f"`mvx trace` did not end within {EXIT_TIMEOUT:.0f}s of the client") from None

    def kill(self) -> None:
        """Kill the monitor and its traced program (its process group) if still running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # SIGINT first: `mvx trace` then kills and reaps its program itself, as on Ctrl-C.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of the group (the monitor, or a traced program that outlived it)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def client(port: int, data: bytes) -> bytes:
    """Connect, send `data` in one write, return everything received until EOF/reset/timeout."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(data)
        s.settimeout(IO_TIMEOUT)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
                if data.endswith(b"\n") and got.endswith(b"\n"):
                    break  # a line-oriented exchange: one reply line is all we wait for
        except ConnectionResetError:
            pass
        except TimeoutError:
            pass
    return got


def split_at_program(lines: list[str], marker: str) -> tuple[list[str], list[str]]:
    """(lines before the program's own first call, the rest). `marker` starts that first call:
    the 'listening' write; what comes before it is ld.so loading libc, not the program."""
    for i, line in enumerate(lines):
        if line.startswith(marker):
            return lines[:i], lines[i:]
    raise DemoFailure(f"no line starting with {marker!r} in the trace")


def read_trace(path: Path) -> list[str]:
    if not path.is_file():
        raise DemoFailure(f"`mvx trace` wrote no trace to {rel(path)}")
    return path.read_text(errors="replace").splitlines()


# --- step 1 -------------------------------------------------------------------------------------

def step_lighttpd(tmp: Path, running: list[Monitored]) -> None:
    headline("Step 1/6  Debian's lighttpd, protected: an amd64 leader and an i386 follower")
    say("""The same web server from Debian's amd64 and i386 packages, each with its own ISA's
        modules, serves one document root (made by mvx.demo.lighttpd). Only the leader talks to the
        network; every response is compared byte for byte with what the i386 build would have
        sent before it leaves. Time is the leader's, replicated, so the Date headers agree.""")
    port = free_port()
    site = lighttpd.make_site(tmp / "site", port)
    argv = mvx("run", "--leader", lighttpd.variant_spec("x86_64"), "--follower", lighttpd.variant_spec("i386"),
               "--", "-D", "-f", str(site.conf))
    mon = Monitored(argv, tmp, "lighttpd", env={"LD_LIBRARY_PATH": lighttpd.env().get("LD_LIBRARY_PATH", "")})
    running.append(mon)
    mon.start()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if mon.proc.poll() is not None or time.monotonic() > deadline:
                raise DemoFailure(f"protected lighttpd did not start: {mon.last_error()}") from None
            time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    head = run_shown(["curl", "-s", "-i", f"{url}/"])
    print(indent(head.replace("\r", "").strip()))
    if "200 OK" not in head or "Served by every variant" not in head:
        raise DemoFailure("lighttpd did not serve the index page")
    print(indent(run_shown(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} bytes",
                            f"{url}/1m.txt"])))
    load = run_shown(["wrk", "-t1", "-c4", "-d3s", f"{url}/1k.txt"], timeout=60)
    print(indent("\n".join(ln for ln in load.splitlines() if "requests in" in ln or "Requests/sec" in ln)))
    if "Requests/sec" not in load:
        raise DemoFailure("wrk produced no result")
    say("""Now SIGTERM to mvx: the signal reaches every variant at the same point of its syscall
        stream, each lighttpd shuts down gracefully, and their exit statuses are compared.""")
    mon.proc.send_signal(signal.SIGTERM)
    status = mon.wait_exit()
    err = mon.stderr_path.read_text(errors="replace")
    print(f"    mvx run exited with lighttpd's own status, {status}, the same on both variants; "
          f"divergences reported: {err.count('DIVERGENCE')}")
    if status == 1:
        print("    (1 is lighttpd's graceful ending when connections were still closing at the signal, here\n"
              "    wrk's last ones: native lighttpd exits 1 there too)")
    if status == 70 or status >= 128 or "DIVERGENCE" in err:
        raise DemoFailure(f"protected lighttpd ended with {status}: {mon.last_error()}")


def step_syscalls() -> None:
    headline("Step 2/6  `mvx syscalls`: the same accept, three different raw syscalls, one canonical accept4")
    say("""Every ISA numbers its syscalls differently, and i386 glibc does not even call accept4
        directly: it goes through the multiplexer socketcall(102), whose first argument picks the
        sub-call. mvx folds all of them into one canonical call before comparing.""")
    out = run_shown(mvx("syscalls", "--arch", "x86_64", "accept4"))
    print(indent(out))
    if "accept4 = 288 on x86_64" not in out or "-> accept4(" not in out:
        raise DemoFailure("mvx syscalls --arch x86_64 accept4 did not show accept4 = 288")
    print()
    out = run_shown(mvx("syscalls", "--arch", "i386", "102"))
    keep = [ln for ln in out.splitlines() if not ln.lstrip()[:2].strip().isdigit()
            or " accept" in ln]
    omitted = len(out.splitlines()) - len(keep)
    print(indent("\n".join(keep)))
    print(f"    (... {omitted} other socketcall sub-calls omitted)")
    if "socketcall = 102 on i386" not in out or "demultiplexed" not in out or \
            "accept4 (4 args) -> accept4(" not in out or "accept (3 args) -> accept4(" not in out:
        raise DemoFailure("mvx syscalls --arch i386 102 did not show socketcall's accept sub-calls")
    print()
    out = run_shown(mvx("syscalls", "--canonical", "accept4"))
    print(indent(out))
    if "x86_64: accept(43), accept4(288)" not in out or "i386: socketcall(102)[arg0=5]" not in out:
        raise DemoFailure("mvx syscalls --canonical accept4 did not list the per-ISA sources")
    say("""accept4 on x86_64 (288), socketcall(102) with sub-call 5 (accept) or 18 (accept4) on i386,
        and i386's own accept4(364) all become the canonical accept4(sockfd, addr, addrlen, flags);
        a plain accept gets flags 0. Flag values are decoded to names, so they compare equal across
        ISAs even where the numbers differ.""")


# --- step 2 -------------------------------------------------------------------------------------

def step_epoll(tmp: Path, running: list[Monitored]) -> None:
    headline("Step 3/6  `mvx trace`: the x86_64 and the i386 epoll_server serve one client each")
    say(f"""Each build runs under `mvx trace --mode hybrid`, which traps only the named canonical
        syscalls ({ONLY}), performs the ones it can for the program (seccomp user notification) and
        writes one strace-style line per call to a file. The last argument `1` makes epoll_server exit
        after serving one connection, so nothing has to be killed.""")
    traces: dict[str, list[str]] = {}
    for arch in ARCHES:
        port = free_port()
        trace = tmp / f"epoll_server.{arch}.trace"
        mon = Monitored(mvx("trace", "--mode", "hybrid", "--only", ONLY, "-o", str(trace), "--",
                            str(VARIANTS / arch / "epoll_server"), str(port), "1"), tmp, f"epoll.{arch}")
        running.append(mon)
        mon.start()
        mon.wait_listening()
        print(f"    server stdout: {mon.stdout().strip()}")
        request = b"hello from the demo client\n"  # the same input for both builds
        print(f"    client -> 127.0.0.1:{port}: {request!r}")
        reply = client(port, request)
        print(f"    client <- {reply!r}")
        if reply != REPLY:
            raise DemoFailure(f"{arch} epoll_server replied {reply!r}, expected {REPLY!r}")
        status = mon.wait_exit()
        print(f"    mvx trace exited with status {status}")
        if status != 0:
            raise DemoFailure(f"{arch} epoll_server under mvx trace exited with {status}: {mon.last_error()}")
        traces[arch] = read_trace(trace)
        print()

    marker = 'write(1, "epoll_server: listening'
    for arch in ARCHES:
        print(f"--- canonical trace of the {arch} build ({rel(tmp)}/epoll_server.{arch}.trace):")
        print(indent("\n".join(traces[arch])))
        print()
    a, b = ARCHES
    (pre_a, prog_a), (pre_b, prog_b) = (split_at_program(traces[x], marker) for x in ARCHES)
    print(f"--- diff -u {a} {b}:")
    diff = list(difflib.unified_diff(traces[a], traces[b], a, b, n=0, lineterm=""))
    print(indent("\n".join(diff[2:]) if diff else "(no differences)"))
    if prog_a != prog_b:
        first = next(i for i, (x, y) in enumerate(zip(prog_a, prog_b)) if x != y) \
            if any(x != y for x, y in zip(prog_a, prog_b)) else min(len(prog_a), len(prog_b))
        raise DemoFailure(f"the program parts of the traces differ at line {first + 1} after the "
                          "'listening' write")
    if not any(line.startswith("accept4(") for line in prog_a):
        raise DemoFailure("no accept4 in the epoll_server traces")
    say(f"""From the program's first traced call (the `listening` write) to its exit, the {len(prog_a)}
        canonical lines are identical for both builds, although the raw calls behind them differ:
        x86_64 calls accept4(288) and epoll_wait(232), the i386 build socketcall(102) with sub-call
        18 and epoll_wait(256), with 32-bit registers and struct layouts. The one difference is in the
        {len(pre_a)} lines before it, the dynamic loader opening libc.so.6: it reads the first
        {_elf_read(pre_a)} bytes of the 64-bit libc and {_elf_read(pre_b)} of the 32-bit one.
        That is start-up code, not the program, and it legitimately differs per ISA.""")


def _elf_read(lines: list[str]) -> str:
    """The byte count of the loader's read of libc's ELF header, as rendered ('832')."""
    for line in lines:
        if line.startswith("read(") and "ELF" in line:
            return line.rsplit("= ", 1)[-1]
    return "some"


# --- step 3 -------------------------------------------------------------------------------------

def step_attack(tmp: Path, running: list[Monitored]) -> None:
    headline("Step 4/6  The attack: one stack-smashing payload, two builds, two different outcomes")
    say("""vuln_server is epoll_server with a bug: it reads up to 128 bytes into a 16-byte stack
        buffer. scripts/make_attack.py reads the x86_64 build's addresses and frame layout and
        prints a payload that overwrites the return address with the address of win(), a function
        the program never calls (it prints PWNED, creates $MVX_MARKER and exits 66).""")
    victim = VARIANTS / "x86_64" / "vuln_server"
    argv = [sys.executable, str(ROOT / "scripts" / "make_attack.py"), "-v", str(victim)]
    print(f"$ {PY} scripts/make_attack.py -v {rel(victim)} > {tmp / 'payload.bin'}", flush=True)
    r = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode != 0 or not r.stdout:
        raise DemoFailure(f"make_attack.py failed: {r.stderr.decode(errors='replace').strip()}")
    payload = r.stdout
    (tmp / "payload.bin").write_bytes(payload)
    print(indent(r.stderr.decode(errors="replace").strip()))
    print()

    results: dict[str, tuple[int, str, list[str], bool]] = {}
    for arch in ARCHES:
        port = free_port()
        trace = tmp / f"vuln_server.{arch}.trace"
        marker = tmp / f"pwned.{arch}"
        mon = Monitored(mvx("trace", "--mode", "hybrid", "-o", str(trace), "--",
                            str(VARIANTS / arch / "vuln_server"), str(port), "1"),
                        tmp, f"vuln.{arch}", env={"MVX_MARKER": str(marker)})
        running.append(mon)
        mon.start()
        mon.wait_listening()
        print(f"    client -> 127.0.0.1:{port}: the {len(payload)}-byte x86_64 payload")
        reply = client(port, payload)
        print(f"    client <- {reply!r}")
        status = mon.wait_exit()
        out = mon.stdout()
        print("    server stdout: " + " | ".join(out.strip().splitlines()))
        print(f"    mvx trace exited with status {status}"
              + (f" (128 + {signal.Signals(status - 128).name})" if 128 < status < 160 else ""))
        print(f"    marker file {rel(marker)}: {'created' if marker.exists() else 'not created'}")
        results[arch] = (status, out, read_trace(trace), marker.exists())
        print()

    tails = {}
    for arch in ARCHES:
        lines = results[arch][2]
        start = next((i for i, ln in enumerate(lines) if ln.startswith("read(5,")), max(len(lines) - 8, 0))
        tails[arch] = lines[start:]
        print(f"--- end of the {arch} trace, from the read of the payload "
              f"({start} earlier lines in {rel(tmp)}/vuln_server.{arch}.trace):")
        print(indent("\n".join(tails[arch])))
        print()

    status, out, lines, marked = results["x86_64"]
    if status != 66 or "PWNED" not in out or not marked or \
            not any(ln.startswith('write(1, "PWNED\\n", 6)') for ln in lines):
        raise DemoFailure(f"the x86_64 vuln_server was not hijacked as expected (status {status})")
    status, out, lines, marked = results["i386"]
    if status != 128 + signal.SIGSEGV or "PWNED" in out or marked or "+++ killed by SIGSEGV +++" not in lines:
        raise DemoFailure(f"the i386 vuln_server did not crash with SIGSEGV as expected (status {status})")

    first = next(((x, y) for x, y in zip(tails["x86_64"][1:], tails["i386"][1:]) if x != y), None)
    detail = ""
    if first:
        detail = f"""The first canonical call that differs comes right after the read of the payload:
            x86_64 `{first[0]}` against i386 `{first[1]}`."""
        if "1094795585" in first[1]:
            detail += """ On i386 the handler's fd argument lives on the stack above the buffer and
                the payload's 'A's overwrote it (0x41414141 = 1094795585)."""
    say(f"""The same bytes hijacked the x86_64 build (win() ran: PWNED, exit 66, the marker file) and
        merely crashed the i386 build (SIGSEGV: its return address became 0x41414141, the padding).
        {detail}

        This is the divergence an MVX engine catches: run side by side in lockstep, the builds stop
        agreeing at the first syscall after the overflow. What you saw here are two separate
        single-variant runs compared after the fact; step 5 runs them together.""")


# --- steps 4 and 5 ------------------------------------------------------------------------------

def run_pair(tmp: Path, running: list[Monitored], program: str, leader: str, follower: str, tag: str,
             args: list[str], env: dict[str, str] | None = None) -> Monitored:
    log = tmp / f"{tag}.log.jsonl"
    mon = Monitored(mvx("run", "--log", str(log), "--leader", str(VARIANTS / leader / program), "--follower",
                        str(VARIANTS / follower / program), "--", *args), tmp, tag, env=env)
    running.append(mon)
    mon.start()
    mon.wait_listening()
    return mon


def step_run(tmp: Path, running: list[Monitored]) -> None:
    headline("Step 5/6  `mvx run`: one leader, one follower of another ISA, in step")
    say("""`mvx run` starts one monitor process per variant, each pinned with its variant to its own
        CPU. The leader serves the client; the follower gets the leader's inputs (accept4, epoll
        events translated through fds, reads) replayed, and its outputs (writes, bind, listen) are
        compared byte for byte, not performed. The last argument `2` makes epoll_server exit after
        two connections; exit statuses are compared too.""")
    for leader, follower in (("x86_64", "i386"), ("i386", "x86_64")):
        port = free_port()
        print(f"--- {leader} leader, {follower} follower")
        mon = run_pair(tmp, running, "epoll_server", leader, follower, f"run.{leader}", [str(port), "2"])
        for request in (b"hello\n", b"how are you?\n"):
            reply = client(port, request)
            print(f"    client {request!r} -> {reply!r}")
            if reply != REPLY:
                raise DemoFailure(f"{leader}-led epoll_server replied {reply!r}, expected {REPLY!r}")
        status = mon.wait_exit()
        err = mon.stderr_path.read_text(errors="replace")
        print(f"    mvx run exited with status {status}; divergences reported: {err.count('DIVERGENCE')}")
        if status != 0 or "DIVERGENCE" in err:
            raise DemoFailure(f"mvx run ({leader} leader) ended with {status}: {mon.last_error()}")
        events = [ln for ln in (tmp / f"run.{leader}.log.jsonl").read_text().splitlines() if '"end"' in ln]
        print(f"    --log: {events[-1] if events else '(no end event)'}")
        print()
    say("""Both directions served the client with zero divergences: the canonical calls of the two
        builds agreed one by one, although their raw numbers, registers and struct layouts do not.""")


def step_run_attack(tmp: Path, running: list[Monitored]) -> None:
    headline("Step 6/6  The attack under `mvx run`: caught before its first effect")
    say("""The same payload, now sent to vuln_server run as an x86_64 leader with an i386 follower.
        Under `--lockstep sensitive` (the default) the leader may not perform an output until every
        follower has reached the same call with the same arguments.""")
    payload = (tmp / "payload.bin").read_bytes()
    port = free_port()
    marker = tmp / "pwned.mvx-run"
    mon = run_pair(tmp, running, "vuln_server", "x86_64", "i386", "run.attack", [str(port)],
                   env={"MVX_MARKER": str(marker)})
    reply = client(port, b"hello\n")
    print(f"    client b'hello\\n' -> {reply!r}")
    print(f"    client -> the {len(payload)}-byte x86_64 payload")
    client(port, payload)
    status = mon.wait_exit()
    out = mon.stdout()
    err = mon.stderr_path.read_text(errors="replace")
    print(indent(err.strip()))
    print(f"    mvx run exited with status {status}")
    print(f"    leader stdout: {' | '.join(out.strip().splitlines())}")
    print(f"    marker file {rel(marker)}: {'created' if marker.exists() else 'not created'}")
    if reply != REPLY or status != 70 or "DIVERGENCE" not in err or "PWNED" in out or marker.exists():
        raise DemoFailure(f"the attack was not stopped as described (status {status})")
    say("""The follower's call after the overflow differed from the leader's (or it crashed): mvx
        reported the divergence, with both sides' calls, and killed every variant. The hijacked
        x86_64 leader never printed PWNED and never created the marker file: its first malicious
        effect was held by lockstep and never happened.""")


# --- main ---------------------------------------------------------------------------------------

def check_variants() -> None:
    missing = [rel(VARIANTS / a / p) for a in ARCHES for p in ("epoll_server", "vuln_server")
               if not (VARIANTS / a / p).is_file()]
    if missing:
        raise DemoFailure(f"missing {', '.join(missing)}: run `bash scripts/build_variants.sh` (or `just variants`)")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python3 -m mvx.demo", description=__doc__.split("\n\n")[0]).parse_args(argv)
    t0 = time.monotonic()
    print("mvx demo: what works today, step by step. Every command below is run for real.")
    tmp = Path(tempfile.mkdtemp(prefix="mvx-demo-"))
    running: list[Monitored] = []
    try:
        check_variants()
        step_lighttpd(tmp, running)
        step_syscalls()
        step_epoll(tmp, running)
        step_attack(tmp, running)
        step_run(tmp, running)
        step_run_attack(tmp, running)
        headline("What you just saw")
        say("""mvx translates each ISA's raw syscalls (numbers, registers, multiplexed socketcall,
            flag values, struct layouts) into one canonical form, so builds of the same program for
            x86_64 and i386 produce the same canonical trace (past the loader's start-up): `mvx syscalls` shows the tables and
            `mvx trace` runs one program under the monitor (ptrace, seccomp or hybrid interception)
            and prints those canonical calls.

            A memory-corruption exploit depends on one build's addresses and stack layout. Sent to
            both builds, the x86_64 payload took over the x86_64 server and crashed the i386 one.
            `mvx run` keeps the builds in step on every synced call, replaying the leader's inputs
            into the follower and comparing outputs: it served clients from either ISA as leader
            with zero divergences, and caught the attack before its first effect.

            Debian's lighttpd ran the same way, with every response checked across the two ISAs,
            time replicated from the leader, and SIGTERM delivered to both builds at the same point.

            aarch64 builds exist too, but run under qemu-user, which cannot be traced with ptrace
            (an arm64 node under qemu-system is the way; not part of this demo).""")
        print(f"demo finished in {time.monotonic() - t0:.1f}s: everything behaved as described.")
        return 0
    except DemoFailure as exc:
        print(f"\nmvx demo: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nmvx demo: interrupted", file=sys.stderr)
        return 130
    finally:
        for mon in running:
            mon.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
