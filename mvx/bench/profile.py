"""Where the time goes: a profile of lighttpd under `mvx run` (default mode) for `mvx bench`.

One run of Debian's lighttpd (x86_64 leader, i386 follower) under a keep-alive wrk load. While
the load runs, py-spy samples both monitor processes (`--idle`: wall time, blocked or not, so a
thread's samples add up to its whole time) and /proc gives the CPU time of every monitor and
variant. The monitor thread's wall time is split into named buckets (the innermost bucketed
frame of each sample wins); the run's own counts give synced calls per request, so the numbers
read per synced call. py-spy reads the monitors' memory without stopping them (--nonblocking)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

from mvx import MvxError
from mvx.bench import servers
from mvx.demo import lighttpd

RATE_HZ = 250
# (bucket, frames that put a sample in it); the innermost match in a stack wins
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("in the C loop: hot calls carried, and its waits for the variant and the peer", ("Variant.wait",)),
    ("answering a notification (ioctl)", ("Variant.respond", "Variant.install_fd", "Variant.continue_call")),
    ("resuming a ptrace stop", ("Variant.resume", "Variant.skip", "Variant.rewind")),
    ("waiting for the follower's check (lockstep)", ("LeaderLink.check",)),
    ("waiting for the window (follower acks)", ("LeaderLink.publish",)),
    ("waiting for the leader's next record", ("FollowerMonitor.next_record",)),
    ("sending a record (binary frame, socket)", ("LeaderSession._send", "FollowerSession._reply", "Pipe.send")),
    ("performing the call for the variant", ("perform",)),
    ("replaying a result into the follower", ("inject",)),
    ("reading the call (registers, memory, decode)", ("Monitor.call_of", "Monitor.synced_call")),
    ("decoding out-data", ("decode_outputs",)),
    ("sync rules (views, compare, records)", ("LeaderSync.", "FollowerSync.")),
]
OTHER = "other Python in the monitor loop"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    return m.group("func") if m else frame.strip()


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) format: 'frame;frame;... count' per line, outermost first."""
    out = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            out.append(([_frame_name(f) for f in stack.split(";")], int(count)))
    return out


def bucket_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, marks in BUCKETS:
            if any(frame == m or (m.endswith(".") and frame.startswith(m)) for m in marks):
                return name
    return OTHER


def monitor_thread_buckets(stacks: list[tuple[list[str], int]]) -> tuple[int, dict[str, int]]:
    """(samples of the monitor thread, samples per bucket). The monitor thread is the one whose
    stack runs Monitor.run; the session's reader thread and trio's thread are counted apart."""
    total, buckets = 0, Counter()
    for frames, n in stacks:
        if "Monitor.run" not in frames:
            continue
        total += n
        buckets[bucket_of(frames)] += n
    return total, dict(buckets)


def top_self(stacks: list[tuple[list[str], int]], limit: int = 8) -> list[tuple[str, int]]:
    """The leaf frames with the most samples in the monitor thread, idle waits included."""
    c = Counter()
    for frames, n in stacks:
        if "Monitor.run" in frames:
            c[frames[-1]] += n
    return c.most_common(limit)


def _stat_times(stat: Path) -> tuple[int, int]:
    """(utime, stime) in clock ticks, from a /proc .../stat file (process or thread)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def _proc_times(pid: int) -> tuple[int, int]:
    return _stat_times(Path(f"/proc/{pid}/stat"))


# by the start of comm (trio names a worker thread "<function> from <module>", cut at 15 bytes); the rest: trio's
THREADS = {"_guarded": "monitor thread", "_read_loop": "channel reader thread"}


def _thread_times(pid: int) -> dict[str, tuple[int, int]]:
    """(utime, stime) per thread kind of a monitor process (threads are named after their function)."""
    out: dict[str, tuple[int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            tu, ts = _stat_times(task / "stat")
        except OSError:
            continue
        kind = next((k for prefix, k in THREADS.items() if comm.startswith(prefix)), "trio thread (main)")
        u, s = out.get(kind, (0, 0))
        out[kind] = (u + tu, s + ts)
    return out


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait_for(what, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(interval)
    return None


def py_spy() -> str:
    """py-spy's path: on PATH, or beside this Python (pip's scripts directory)."""
    found = find_py_spy()
    if not found:
        raise MvxError("py-spy is not installed (pip install py-spy; scripts/setup.sh installs it)")
    return found


def find_py_spy() -> str | None:
    """On PATH, in this Python's scripts directory, or in the user's (pip --user: ~/.local/bin, on
    PATH only from the next login)."""
    dirs = [sysconfig.get_path("scripts"), sysconfig.get_path("scripts", f"{os.name}_user")]
    return shutil.which("py-spy") or next(filter(None, (shutil.which("py-spy", path=d) for d in dirs)), None)


def profile_lighttpd(workdir: Path, port: int, seconds: float, client_cpu: int | None, progress) -> dict:
    """Profile one keep-alive wrk load (8 connections, 1 KiB file) of lighttpd under `mvx run`."""
    spy = py_spy()
    server = servers.get("lighttpd")
    server.setup(workdir, port)
    log = workdir / "mvx.log"
    argv = [sys.executable, "-m", "mvx", "run", "--log", str(log),
            "--leader", shlex.join(server.argv("x86_64", port, workdir)),
            "--follower", shlex.join(server.argv("i386", port, workdir))]
    small = servers.FILES["small"][0]
    err = open(workdir / "mvx.err", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                            start_new_session=True, env={**lighttpd.env(), "MVX_FAST_STATS": "1"})
    try:
        up = _wait_for(lambda: _probe(port) or proc.poll() is not None, 30)
        if not up or proc.poll() is not None:
            raise MvxError(f"lighttpd under mvx did not come up for the profile: {_tail(workdir / 'mvx.err')}")
        monitors = _wait_for(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid), 10)
        if not monitors:
            raise MvxError("the profile could not find the two monitor processes of `mvx run`")
        roles = {}
        for pid in monitors:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            roles["leader" if b"leader" in cmd[:4] else "follower"] = pid
        variants = {role: (_children(pid) or [None])[0] for role, pid in roles.items()}
        progress(f"profile: lighttpd under mvx, wrk -c8 keep-alive 1 KiB for {seconds + 1:g} s, py-spy on both monitors")
        load = subprocess.Popen(_taskset(client_cpu) + ["wrk", "-t1", "-c8", f"-d{int(seconds) + 1}s", "--latency",
                                                        f"http://127.0.0.1:{port}/{small}"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # warm up; then sample and count over the same window
        before = {name: _proc_times(pid) for name, pid in [*roles.items(), *(("variant-" + r, p) for r, p in variants.items() if p)]}
        threads_before = {role: _thread_times(pid) for role, pid in roles.items()}
        t0 = time.monotonic()
        spies = {role: subprocess.Popen([spy, "record", "--nonblocking", "--idle", "-r", str(RATE_HZ),
                                         "-d", str(int(seconds)), "-f", "raw", "-o", str(workdir / f"{role}.raw"),
                                         "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for role, pid in roles.items()}
        for spy in spies.values():
            spy.wait(timeout=seconds + 30)
        elapsed = time.monotonic() - t0
        after = {name: _proc_times(pid) for name, pid in [*roles.items(), *(("variant-" + r, p) for r, p in variants.items() if p)]}
        threads_after = {role: _thread_times(pid) for role, pid in roles.items()}
        wrk_out = load.communicate(timeout=seconds + 30)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err.close()
    end = _end_event(log)
    requests = _wrk_requests(wrk_out)
    rps = _wrk_rps(wrk_out)
    if not end or not requests:
        raise MvxError(f"the profile run did not finish cleanly: {_tail(workdir / 'mvx.err')}")
    calls_per_request = end["synced_calls"] / requests
    window_calls = rps * elapsed * calls_per_request
    tick = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for name in before:
        du, ds = (after[name][0] - before[name][0]) / tick, (after[name][1] - before[name][1]) / tick
        cpu[name] = {"user_s": du, "sys_s": ds, "share_of_a_cpu": (du + ds) / elapsed,
                     "user_us_per_call": 1e6 * du / window_calls, "sys_us_per_call": 1e6 * ds / window_calls}
    threads = {}
    for role in roles:
        for kind, (u1, s1) in threads_after[role].items():
            u0, s0 = threads_before[role].get(kind, (0, 0))
            threads[f"{role} {kind}"] = {"user_us_per_call": 1e6 * (u1 - u0) / tick / window_calls,
                                         "sys_us_per_call": 1e6 * (s1 - s0) / tick / window_calls,
                                         "share_of_a_cpu": (u1 - u0 + s1 - s0) / tick / elapsed}
    carried = _carried(workdir / "mvx.err")
    result = {"carried_in_c": carried,
              "command": "wrk -t1 -c8 --latency keep-alive, the 1 KiB file, against `mvx run` (hybrid, x86_64 leader, "
                         f"i386 follower); py-spy record --nonblocking --idle -r {RATE_HZ} on each monitor",
              "seconds": round(elapsed, 2), "requests_per_s": rps, "synced_calls_per_request": calls_per_request,
              "divergences": end.get("divergences"), "cpu": cpu, "threads": threads, "monitors": {}}
    for role in roles:
        raw = workdir / f"{role}.raw"
        if not raw.exists():
            why = spies[role].stderr.read().decode(errors="replace").strip().splitlines()
            raise MvxError(f"py-spy wrote no profile of the {role}'s monitor: {why[-1] if why else 'no reason given'}")
        stacks = parse_raw(raw.read_text())
        total, buckets = monitor_thread_buckets(stacks)
        us_per_call = 1e6 * elapsed / window_calls if window_calls else 0.0
        result["monitors"][role] = {
            "samples": total,
            "buckets": [{"bucket": b, "share": n / total, "us_per_call": us_per_call * n / total}
                        for b, n in sorted(buckets.items(), key=lambda kv: -kv[1])] if total else [],
            "top_frames": [{"frame": f, "share": n / total} for f, n in top_self(stacks)] if total else [],
            "wall_us_per_call": us_per_call,
        }
    return result


def _taskset(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


def _probe(port: int) -> bool:
    try:
        servers.get("lighttpd").probe(port, 2.0)
        return True
    except (OSError, MvxError):
        return False


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"


def _carried(err: Path) -> dict:
    """{role: [calls carried in C, synced calls]} from MVX_FAST_STATS's lines (the whole run)."""
    out = {}
    try:
        for line in err.read_text(errors="replace").splitlines():
            m = re.match(r"mvx: (leader|follower): (\d+) hot calls carried in C, (\d+) synced calls", line)
            if m:
                out[m.group(1)] = [int(m.group(2)), int(m.group(3))]
    except OSError:
        pass
    return out


def _end_event(log: Path) -> dict | None:
    try:
        for line in reversed(log.read_text().splitlines()):
            event = json.loads(line)
            if event.get("event") == "end" and event.get("role", "leader") == "leader":
                return event
    except (OSError, ValueError):
        return None
    return None


def _wrk_requests(out: str) -> int:
    m = re.search(r"(\d+) requests in", out)
    return int(m.group(1)) if m else 0


def _wrk_rps(out: str) -> float:
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


def markdown(prof: dict) -> list[str]:
    """The report's profile section."""
    lines = ["## Where the time goes (profile)", "",
             (f"One extra run: {prof['command']}, {prof['seconds']:g} s sampled after 1 s of warm-up. "
             f"{prof['requests_per_s']:,.0f} requests/s, {prof['synced_calls_per_request']:.2f} synced calls per request "
             f"(the run's own count), {prof['divergences']} divergences."), "",
             "CPU time over the sampled window (from /proc; per synced call of the window):", "",
             "| process | share of one CPU | user µs / call | system µs / call |", "|---|---|---|---|"]
    for name, c in prof["cpu"].items():
        label = name.replace("variant-", "") + (" variant" if name.startswith("variant-") else " monitor")
        lines.append(f"| {label} | {c['share_of_a_cpu']:.0%} | {c['user_us_per_call']:.1f} | {c['sys_us_per_call']:.1f} |")
    lines += ["", "The monitors' CPU time by thread:", "", "| thread | share of one CPU | user µs / call | system µs / call |",
              "|---|---|---|---|"]
    for name, c in sorted(prof.get("threads", {}).items()):
        lines.append(f"| {name} | {c['share_of_a_cpu']:.0%} | {c['user_us_per_call']:.1f} | {c['sys_us_per_call']:.1f} |")
    for role, mon in prof["monitors"].items():
        lines += ["", (f"The {role}'s monitor thread: {mon['wall_us_per_call']:.0f} µs of wall time per synced call, "
                  f"split by py-spy ({mon['samples']} samples, idle waits included):"), "",
                  "| where | share | µs / call |", "|---|---|---|"]
        lines += [f"| {b['bucket']} | {b['share']:.0%} | {b['us_per_call']:.1f} |" for b in mon["buckets"]]
        lines += ["", "Leaf frames with the most samples: " + ", ".join(
            f"`{t['frame']}` {t['share']:.0%}" for t in mon["top_frames"]) + "."]
    return lines + ["", *reading(prof)]


def _share(prof: dict, role: str, bucket: str) -> float:
    return sum(b["share"] for b in prof["monitors"].get(role, {}).get("buckets", []) if b["bucket"] == bucket)


def _thread(prof: dict, kind: str, which: str) -> str:
    """'A / B µs per call, leader / follower' for the two monitors' threads of this kind."""
    vals = [prof.get("threads", {}).get(f"{role} {kind}", {}).get(f"{which}_us_per_call") for role in ("leader", "follower")]
    return " / ".join("?" if v is None else f"{v:.0f}" for v in vals) + " µs per call, leader / follower"


def reading(prof: dict) -> list[str]:
    """What the numbers say, and what would move them (issue 15: the data plane in C)."""
    lead, fol = prof["cpu"].get("leader", {}), prof["cpu"].get("follower", {})
    per_call = {role: c.get("user_us_per_call", 0) + c.get("sys_us_per_call", 0) for role, c in (("leader", lead),
                                                                                                  ("follower", fol))}
    threads = prof.get("threads", {})

    def thread(role: str, kind: str) -> str:
        t = threads.get(f"{role} {kind}", {})
        return f"{t.get('user_us_per_call', 0) + t.get('sys_us_per_call', 0):.0f}"

    carried = prof.get("carried_in_c", {})
    share = ", ".join(f"{role} {c}/{n} ({c / n:.0%})" for role, (c, n) in carried.items() if n) or "not reported"
    in_c = {role: sum(b["share"] for b in mon["buckets"] if b["bucket"].startswith("in the C loop"))
            for role, mon in prof["monitors"].items()}
    per_request = max(per_call.values()) * prof["synced_calls_per_request"]
    return [
        "What this says:", "",
        (f"- The C loop carries nearly every synced call of this workload (calls carried in C / all synced calls, "
         f"whole run: {share}); the monitor threads spend {in_c.get('leader', 0):.0%} (leader) and "
         f"{in_c.get('follower', 0):.0%} (follower) of their wall time in it, its waits included."),
        (f"- Each monitor process uses {per_call['leader']:.0f} µs (leader) and {per_call['follower']:.0f} µs "
         f"(follower) of CPU per synced call, {per_request:.0f} µs per request. By thread: the monitor thread "
         f"{thread('leader', 'monitor thread')} / {thread('follower', 'monitor thread')} µs (leader / follower: "
         "the notification round trips, process_vm reads and writes, encoding and the channel sends), the channel "
         f"reader thread {thread('leader', 'channel reader thread')} / {thread('follower', 'channel reader thread')} "
         "µs (the C pump, now only while Python runs: the monitor thread takes the checks itself), the "
         "rest trio's thread and, with write-behind, the outbox's. The target is 10 µs per call per monitor."),
        "",
        "What limits it, and what would move it:", "",
        ("1. Write-behind (the default) answers a response's writev at once and holds its bytes until the "
         "follower checked it, so the leader's program runs on and the two CPUs work in parallel; without it "
         "(`hybrid-no-write-behind` above) the leader's program waits at every response for the follower's check, "
         "a ping-pong between the CPUs per request that leaves both idle part of the time."),
        ("2. The leader's monitor thread reads its channels itself in the C loop (the reader thread's share above "
         "is what is left: Python's stretches), and under write-behind sends what the checks released; a poll "
         "before sleeping in the lockstep wait (`MVX_SPIN_US`) measured no better, nor did one in a follower's "
         "wait for records (its CPU is the load generator's)."),
        ("3. The C loop's own cost is nearly all system time (the tables above), and most of that is not the "
         "system calls themselves (0.25-0.4 µs each here) but the switches they cause: per trapped call the "
         "variant's trap and its answer are two switches between processes on one CPU. The follower's in-process "
         "agent (the default; `hybrid-no-agent` above is without it) answers its socket reads, file preads, recv, "
         "clock reads, empty accept4 and epoll waits in its program, from what its monitor published just before "
         "it let the variant go, so a follower that lags behind traps about once per request at keep-alive (the "
         "response's writev). The leader's agent makes its preads of its own files through the gate and claims "
         "them (its traps per request at c8 keep-alive: 4.4 -> 3.4). The leader still traps its socket read and "
         "its writev: CPU 0 (the leader and its monitor) is the one at 100%. What would move it: reads served "
         "from bytes the monitor peeked at the epoll wait (docs/proposals/in-process-agent.md, stage 1; by its "
         "census this moves a trap to the epoll wait rather than removing it, unless the agent waits briefly "
         "for data), and for the close points the accept4/close/epoll_ctl/shutdown calls, which trap in both "
         "variants (about 11 follower traps per request at c1 close)."),
        ("4. The 1 MiB points: each sendfile's bytes are read (copied) and digested with XXH3-128 in each monitor "
         "before the leader's call runs, and under lockstep the leader waits for the follower's digest at each of "
         "the four or five sendfile calls of a response."),
        ("5. Batching the leader's records (one write per wake-up, `MVX_FAST_BATCH=1`) was measured slower under "
         "lockstep (0.6x): the follower's replay then no longer overlaps the leader's work."),
    ]
