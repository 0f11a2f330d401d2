"""`mvx bench`: the A/B overhead benchmark (mvx/bench/harness.py) from the command line."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mvx import MvxError

QUICK = {"duration": 1.0, "rounds": 1, "connections": "8", "intercept_calls": 2000, "intercept_reps": 1}
FULL = {"duration": 1.0, "rounds": 3, "connections": "1,8,64", "intercept_calls": 20000, "intercept_reps": 5}


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise MvxError(f"{what}: not a comma-separated list of integers: {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise MvxError(f"{what}: needs positive integers, got {text!r}")
    return sorted(set(values))


def plan_from_args(args: argparse.Namespace):
    from mvx.bench import harness as bench
    from mvx.bench import servers

    base = QUICK if args.quick else FULL
    duration = base["duration"] if args.duration is None else args.duration
    rounds = base["rounds"] if args.rounds is None else args.rounds
    if duration <= 0:
        raise MvxError(f"--duration must be positive, got {duration:g}")
    if rounds <= 0:
        raise MvxError(f"--rounds must be positive, got {rounds}")
    conns = _ints(base["connections"] if args.connections is None else args.connections, "--connections")
    names = [s for s in args.server.split(",") if s]
    if "all" in names:
        names = list(servers.SERVERS)
    for n in names:
        servers.get(n)  # unknown -> MvxError naming the known ones
    modes: list[str] = []
    for item in args.modes or [",".join(c for c in bench.CONFIGS if c != "native")]:
        for m in item.split(","):
            if m and m not in bench.CONFIGS:
                raise MvxError(f"--modes: unknown configuration {m!r} (known: {', '.join(bench.CONFIGS)})")
            if m and m not in modes:
                modes.append(m)
    configs = ["native"] + [m for m in bench.CONFIGS if m in modes and m != "native"]  # ratios need native
    out = Path(args.out)
    if out.suffix in (".md", ".json", ".png"):
        out = out.with_suffix("")
    command = ["python3", "-m", "mvx", "bench", "--server", ",".join(names), "--modes", ",".join(configs[1:]),
               "--duration", f"{duration:g}", "--rounds", str(rounds), "--connections", ",".join(map(str, conns)),
               "--out", str(args.out)]
    if args.no_intercept:
        command.append("--no-intercept")
    if args.no_profile:
        command.append("--no-profile")
    return bench.Plan(servers=names, configs=configs, duration=duration, rounds=rounds, connections=conns, out=out,
                      intercept=not args.no_intercept, profile=not (args.no_profile or args.quick), intercept_calls=base["intercept_calls"],
                      intercept_reps=base["intercept_reps"], startup_timeout=args.startup_timeout,
                      command=shlex.join(command))


def cmd_bench(args: argparse.Namespace) -> int:
    from mvx.bench import harness as bench

    plan = plan_from_args(args)
    show = args.progress if args.progress is not None else sys.stderr.isatty()

    def progress(msg: str) -> None:
        if show or "FAILED" in msg:  # a failure is always said
            print(f"mvx bench: {msg}", file=sys.stderr, flush=True)

    result = bench.run(plan, progress)
    out = plan.out
    print(f"mvx bench: wrote {out.with_suffix('.md')}, {out.with_suffix('.json')}"
          + (f", {out.with_suffix('.png')}" if result.get("plot") == "ok" else f" (no plot: {result.get('plot')})")
          + f" in {result['elapsed_s'] / 60:.1f} min", file=sys.stderr)
    for t in result["targets"]:
        print(f"  {t['name']}: {t['text'].replace('**', '')}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="A/B benchmark: servers natively, under mvx in each mode, and under strace",
        description="Run each server (epoll_server, Debian's lighttpd) natively, under `mvx run` in each --mode "
        "(x86_64 leader, i386 follower) and under `strace -f` / `strace -f --seccomp-bpf` (the default policy's "
        "synced set), interleaved round by round, with load from wrk (lighttpd) or echo_load (epoll_server) at "
        "each concurrency, keep-alive or not, small and large files. Reports throughput, p50/p99 latency and CPU "
        "time per request with their ratios to native from the same run, the targets of issue 6 and the "
        "interception micro-benchmark, and a profile of where the time goes under mvx (py-spy on both monitors "
        "under a lighttpd load), as OUT.md, OUT.json and OUT.png. A configuration that fails (server does "
        "not come up, divergence) is reported as failed with its reason; the rest goes on.",
    )
    p.add_argument("--server", default="all", metavar="NAME[,NAME]",
                   help="epoll, lighttpd or all (default all)")
    p.add_argument("--modes", nargs="+", metavar="CONFIG",
                   help="configurations besides native (always run: ratios need it), comma- or space-separated: "
                   "ptrace seccomp hybrid hybrid-no-write-behind (hybrid with --no-write-behind) hybrid-no-agent (hybrid with "
                   "--no-agent) hybrid-relaxed (hybrid with "
                   "--policy relaxed) hybrid-python ptrace-python "
                   "(the C fast path off: MVX_FAST=0) two-node-tls two-node-tcp (`mvx leader` and `mvx follower` "
                   "as two processes over TCP on loopback, with mutual TLS or --insecure) strace strace-seccomp "
                   "trace (one variant under `mvx trace -o /dev/null`) (default: all)")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="load per workload point and round (default 1; wrk rounds it to whole seconds)")
    p.add_argument("--rounds", type=int, metavar="N", help="interleaved rounds; medians are over them (default 3)")
    p.add_argument("--connections", metavar="N[,N...]", help="concurrent connections (default 1,8,64)")
    p.add_argument("--quick", action="store_true",
                   help="a short run: 1 round, 8 connections only, a small interception benchmark (about a minute)")
    p.add_argument("--no-intercept", action="store_true", help="skip the interception micro-benchmark")
    p.add_argument("--no-profile", action="store_true",
                   help="skip the profile of lighttpd under mvx (py-spy on both monitors; about 10 s; --quick skips it)")
    p.add_argument("--startup-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long a configuration may take to answer its first request (default 30)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a line per run (which configuration and round, time left) and per point (its figures); "
                   "default: when stderr is a terminal (failures are always said)")
    p.add_argument("--out", default="docs/benchmarks", metavar="PREFIX",
                   help="write PREFIX.md, PREFIX.json and PREFIX.png (default docs/benchmarks)")
    p.set_defaults(handler=cmd_bench)
