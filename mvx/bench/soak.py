"""A soak: Debian's lighttpd under `mvx run` (x86_64 leader, i386 follower, hybrid) serving a mixed
load (tests/data/mixed.lua: 1 KiB to 1 MiB files, a 404, a 403, a directory listing, every response
checked) until N requests, with each monitor's RSS sampled between rounds; the report says what was
served, what went wrong, and whether the monitors' memory stayed flat. `just soak` (1,000,000
requests) writes docs/soak.md.

    python3 -m mvx.bench.soak [--requests N] [--connections C] [--round SECONDS] [--out PATH]"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mvx import MvxError
from mvx.bench.harness import git_info, machine_info
from mvx.demo import lighttpd

ROOT = Path(__file__).resolve().parents[2]
MIXED = ROOT / "tests" / "data" / "mixed.lua"
_MIXED_LINE = re.compile(r"mixed: total=(\d+) bad=(\d+) errors=(\d+)")


def _rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _monitors(run_pid: int) -> dict[str, int]:
    """The `mvx leader` and `mvx follower` processes under `mvx run`."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != run_pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        for role in (b"leader", b"follower"):
            if b"mvx" in argv and role in argv[:6]:
                found[role.decode()] = int(entry)
    return found


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise MvxError("lighttpd under mvx did not come up") from None
            time.sleep(0.05)


def soak(requests: int, connections: int, round_s: int, progress=print) -> dict:
    lighttpd.binary("x86_64")
    lighttpd.binary("i386")
    with tempfile.TemporaryDirectory(prefix="mvx-soak-") as tmp:
        port = _free_port()
        site = lighttpd.make_site(Path(tmp) / "site", port)
        log = Path(tmp) / "log.jsonl"
        cmd = [sys.executable, "-m", "mvx", "run", "--log", str(log),
               "--leader", lighttpd.variant_spec("x86_64", "-f", str(site.conf)),
               "--follower", lighttpd.variant_spec("i386", "-f", str(site.conf)), "--", "-D"]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=lighttpd.env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait_port(port, proc)
            monitors = _monitors(proc.pid)
            samples = [{"requests": 0, **{role: _rss_kib(pid) for role, pid in monitors.items()}}]
            totals = {"total": 0, "bad": 0, "errors": 0}
            load_s = 0.0
            while totals["total"] < requests and proc.poll() is None:
                t0 = time.monotonic()
                r = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{round_s}s", "--timeout", "30s",
                                    "-s", str(MIXED), f"http://127.0.0.1:{port}/"],
                                   capture_output=True, text=True, timeout=round_s + 120, check=False)
                load_s += time.monotonic() - t0
                m = _MIXED_LINE.search(r.stdout)
                if not m:
                    raise MvxError(f"wrk said nothing usable: {r.stdout[-300:]} {r.stderr[-300:]}")
                for key, value in zip(("total", "bad", "errors"), m.groups()):
                    totals[key] += int(value)
                samples.append({"requests": totals["total"],
                                **{role: _rss_kib(pid) for role, pid in monitors.items()}})
                progress(f"soak: {totals['total']:,}/{requests:,} requests, {totals['bad']} bad, "
                         f"{totals['errors']} errors; RSS " + ", ".join(
                             f"{role} {kib / 1024:.1f} MiB" for role, kib in samples[-1].items()
                             if role != "requests" and kib))
                if int(m.group(1)) == 0:
                    break
            alive = proc.poll() is None
            time.sleep(2)  # lighttpd ends with 1 if connections are still closing at SIGTERM (natively too)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        events = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
    return {"requests_target": requests, "connections": connections, "round_s": round_s, **totals,
            "divergences": sum(1 for e in events if e.get("event") == "divergence"),
            "alive_to_the_end": alive, "exit_status": proc.returncode, "stderr_tail": err[-2000:],
            "wall_s": round(time.monotonic() - started, 1), "load_s": round(load_s, 1), "rss_kib": samples,
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(), "git": git_info()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def report(r: dict, command: str) -> str:
    first, last = r["rss_kib"][0], r["rss_kib"][-1]
    peak = {role: max(s.get(role) or 0 for s in r["rss_kib"]) for role in ("leader", "follower")}
    rate = r["total"] / r["load_s"] if r["load_s"] else 0
    lines = [
        "# mvx soak: lighttpd under a million mixed requests", "",
        "Generated by `python3 -m mvx.bench.soak` (`just soak`); do not edit by hand. Command:", "",
        "```", command, "```", "",
        (f"Run {r['when']} at git {r['git']['commit'][:12]}{' (dirty)' if r['git']['dirty'] else ''}, "
        f"{r['wall_s'] / 60:.1f} min. Machine: {r['machine']['cpu_model']}, {r['machine']['cpu_count']} CPUs, "
        f"Linux {r['machine']['kernel']}, wrk {r['machine']['wrk']}."), "",
        ("Debian's lighttpd 1.4.69 under `mvx run` (hybrid, x86_64 leader, i386 follower, default policy and "
        f"lockstep), tests/data/mixed.lua's mix over {r['connections']} keep-alive connections (wrk -t1, rounds of "
        f"{r['round_s']} s), every response's status and length checked by the script."), "",
        "| what | figure | target |", "|---|---|---|",
        f"| requests served (checked) | {r['total']:,} | {r['requests_target']:,} |",
        f"| bad responses | {r['bad']} | 0 |",
        f"| errors (connect, read, write, timeout) | {r['errors']} | 0 |",
        f"| divergences | {r['divergences']} | 0 |",
        (f"| mvx alive to the end, exit status after SIGTERM | {'yes' if r['alive_to_the_end'] else 'NO'}, "
        f"{r['exit_status']} | yes, 0 |"),
        f"| throughput over the load | {rate:,.0f} req/s | - |",
    ]
    for role in ("leader", "follower"):
        a, b = first.get(role), last.get(role)
        if a and b:
            lines.append(f"| {role} monitor RSS: start / end / peak | {a / 1024:.1f} / {b / 1024:.1f} / "
                         f"{peak[role] / 1024:.1f} MiB | flat, <= 50 MiB |")
    lines += ["", "RSS of each monitor between rounds:", "", "| requests | leader MiB | follower MiB |", "|---|---|---|"]
    step = max(1, len(r["rss_kib"]) // 12)
    for s in r["rss_kib"][::step] + ([r["rss_kib"][-1]] if (len(r["rss_kib"]) - 1) % step else []):
        lines.append(f"| {s['requests']:,} | {(s.get('leader') or 0) / 1024:.1f} | {(s.get('follower') or 0) / 1024:.1f} |")
    if r["divergences"] or not r["alive_to_the_end"] or r["exit_status"] != 0:
        lines += ["", "mvx's stderr (the end):", "", "```", r["stderr_tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m mvx.bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1_000_000, help="how many checked responses (default 1,000,000)")
    p.add_argument("--connections", type=int, default=8, help="wrk's keep-alive connections (default 8)")
    p.add_argument("--round", type=int, default=30, metavar="SECONDS", help="seconds per wrk round (default 30)")
    p.add_argument("--out", default="docs/soak", metavar="PATH", help="PATH.md and PATH.json (default docs/soak)")
    args = p.parse_args(argv)
    try:
        r = soak(args.requests, args.connections, args.round, progress=lambda s: print(s, file=sys.stderr, flush=True))
    except MvxError as exc:
        print(f"mvx: error: {exc}", file=sys.stderr)
        return 2
    command = "python3 -m mvx.bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.out + ".md").write_text(report(r, command.strip()))
    Path(args.out + ".json").write_text(json.dumps(r, indent=1) + "\n")
    print(f"soak: {r['total']:,} requests, {r['bad']} bad, {r['errors']} errors, {r['divergences']} divergences "
          f"-> {args.out}.md", file=sys.stderr)
    return 0 if r["bad"] == r["errors"] == r["divergences"] == 0 and r["exit_status"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
