"""Interception micro-benchmark: microseconds per intercepted syscall, for each mode, from the
Python monitor and from a C loop that drives the same spawn, filter and stop loop (mvx_floor_loop),
measured interleaved in one run so machine noise hits both alike.

    python3 -m mvx.bench.intercept [--calls N] [--reps R] [--arch x86_64|i386] [--markdown FILE]

The variant calls getppid() N times; only getppid is trapped. "observe" lets each call run (a
leader's local call), "inject" skips it and sets its result (a follower's replicated call)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mvx import MvxError
from mvx.mechanics.engine import Mode, StopKind, TrapSet, Variant
from mvx.mechanics.filters import Trap
from mvx.mechanics.native import lib

SOURCE = Path(__file__).resolve().parent / "programs" / "syscall_loop.c"
CFLAGS = {"x86_64": [], "i386": ["-m32"]}


def build_loop(arch: str) -> str:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    out = Path.home() / ".cache" / "mvx" / f"syscall_loop-{arch}-{digest}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["gcc", "-O2", *CFLAGS[arch], "-o", str(out), str(SOURCE)],
                           capture_output=True, text=True, check=False)
        if r.returncode:
            raise MvxError(f"cannot build the benchmark variant for {arch}: {r.stderr.strip().splitlines()[-1]}")
    return str(out)


def run_native(binary: str, calls: int, cpu: int) -> float:
    t0 = time.perf_counter()
    subprocess.run(["taskset", "-c", str(cpu), binary, str(calls)], check=True)
    return (time.perf_counter() - t0) * 1e6 / calls


def run_traced(binary: str, calls: int, mode: Mode, inject: bool, in_c: bool, cpu: int) -> float:
    action = Trap.NOTIFY if mode is Mode.HYBRID else Trap.TRACE
    v = Variant([binary, str(calls)], mode=mode, traps=TrapSet({"getppid": action}), cpu=cpu)
    v.start()
    try:
        t0 = time.perf_counter()
        if in_c:
            done = lib.mvx_floor_loop(v.native, calls, int(inject))
        else:
            done = 0
            while done < calls:
                stop = v.wait()
                if stop.kind in (StopKind.EXITED, StopKind.KILLED):
                    break
                done += 1
                if stop.kind is StopKind.NOTIFY:
                    v.respond(stop, 0) if inject else v.continue_call(stop)
                elif inject:
                    v.skip(stop, 0)
                else:
                    v.resume()
        elapsed = time.perf_counter() - t0
        if done != calls:
            raise MvxError(f"expected {calls} stops in {mode.value}, saw {done}")
        while v.alive:  # let it exit
            stop = v.wait()
            if stop.kind not in (StopKind.EXITED, StopKind.KILLED):
                v.resume() if stop.kind is not StopKind.NOTIFY else v.continue_call(stop)
        return elapsed * 1e6 / calls
    finally:
        v.kill()


def measure(arch: str, calls: int, reps: int, cpu: int) -> list[dict]:
    binary = build_loop(arch)
    os.sched_setaffinity(0, {cpu})
    rows = []
    native = [run_native(binary, calls, cpu) for _ in range(reps)]
    rows.append({"mode": "native", "action": "-", "python_us": statistics.median(native), "c_us": None})
    for mode in (Mode.PTRACE, Mode.SECCOMP, Mode.HYBRID):
        for inject in (False, True):
            py, c = [], []
            for _ in range(reps):  # interleaved: Python, C, Python, C ...
                py.append(run_traced(binary, calls, mode, inject, False, cpu))
                c.append(run_traced(binary, calls, mode, inject, True, cpu))
            rows.append({"mode": mode.value, "action": "inject" if inject else "observe",
                         "python_us": statistics.median(py), "c_us": statistics.median(c),
                         "python_range": [min(py), max(py)], "c_range": [min(c), max(c)]})
    return rows


def markdown(rows: list[dict], arch: str, calls: int, reps: int, command: str) -> str:
    lines = [
        (f"Interception cost per syscall ({arch} variant, {calls} trapped getppid calls, median of {reps}, "
         "monitor and variant pinned to one CPU)."),
        "",
        f"Command: `{command}`",
        "",
        "| mode | action | Python monitor (us) | C loop, same mechanism (us) | Python / C | target <= 1.5 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["c_us"] is None:
            lines.append(f"| {r['mode']} | - | {r['python_us']:.2f} (untraced) | - | - | - |")
            continue
        ratio = r["python_us"] / r["c_us"]
        lines.append(f"| {r['mode']} | {r['action']} | {r['python_us']:.2f} | {r['c_us']:.2f} | {ratio:.2f} | "
                     f"{'met' if ratio <= 1.5 else 'missed by ' + format(ratio / 1.5, '.2f') + 'x'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m mvx.bench.intercept", description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--arch", default="x86_64", choices=sorted(CFLAGS))
    p.add_argument("--cpu", type=int, default=min(os.sched_getaffinity(0)))
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    args = p.parse_args(argv)
    try:
        rows = measure(args.arch, args.calls, args.reps, args.cpu)
    except MvxError as exc:
        print(f"mvx bench-intercept: error: {exc}", file=sys.stderr)
        return 2
    command = "python3 -m mvx.bench.intercept " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(rows, args.arch, args.calls, args.reps, command.strip())
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
