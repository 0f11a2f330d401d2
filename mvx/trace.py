"""`mvx trace`: run one program under the monitor and print its synced syscalls, strace-style.

The program's own stdin/stdout/stderr pass through; the trace goes to stderr or `-o FILE`. Only the
policy's synced set is trapped, so this shows exactly what an MVX run would compare."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import replace
from typing import TextIO

from mvx import MvxError
from mvx import policy as policymod
from mvx.canonical import RawSyscall, decode_outputs, normalize
from mvx.engine import Mode, Stop, StopKind, TraceeMemory, Trap, TrapSet, Variant
from mvx.proxy import FdCache, answer, can_perform, perform
from mvx.render import render

EXITING = {"exit", "exit_group"}
ENDINGS = (StopKind.EXITED, StopKind.KILLED)


def trap_set(mode: Mode, synced: set[str]) -> TrapSet:
    """Hybrid: notify the calls the monitor can perform itself, trace the rest."""
    if mode is Mode.HYBRID:
        return TrapSet({n: Trap.NOTIFY if can_perform(n) else Trap.TRACE for n in synced})
    return TrapSet({n: Trap.TRACE for n in synced})


def default_cpu() -> int:
    return min(os.sched_getaffinity(0))


class Tracer:
    """Drives one Variant, rendering each synced call with its result."""

    def __init__(self, variant: Variant, out: TextIO, show_pid: bool = False) -> None:
        self.v = variant
        self.out = out
        self.mem = TraceeMemory(variant)
        self.fds = FdCache(variant)
        self.show_pid = show_pid

    def emit(self, line: str) -> None:
        prefix = f"[pid {self.v.pid}] " if self.show_pid else ""
        self.out.write(prefix + line + "\n")
        self.out.flush()

    def call_of(self, stop: Stop):
        return normalize(RawSyscall(stop.arch.name, stop.nr, stop.args), self.mem)

    def run(self) -> int:
        """Trace until the program ends; returns its exit status (128+N when killed by signal N)."""
        v = self.v
        while True:
            stop = v.wait()
            if stop.kind in ENDINGS:
                return self.ended(stop)
            if stop.kind is StopKind.NOTIFY:
                self.on_notify(stop)
            elif stop.kind in (StopKind.ENTRY, StopKind.SECCOMP):
                self.on_trap(stop)
            else:
                v.resume()

    def on_notify(self, stop: Stop) -> None:
        if stop.pid != self.v.pid:  # a forked child: not followed (see docs/DESIGN.md)
            self.emit(f"[pid {stop.pid}] {stop.name}(...) = ? <child process, not followed>")
            self.v.continue_call(stop)
            return
        call = self.call_of(stop)
        done = perform(self.v, stop, call, self.fds)
        if done is None:
            self.emit(render(call) + " <ran in the variant>")
            answer(self.v, stop, done)
            return
        full = decode_outputs(call, self.mem, done.ret)  # while the variant waits: it may reuse the buffer
        ret = answer(self.v, stop, done)
        self.emit(render(replace(full, ret=ret)))

    def on_trap(self, stop: Stop) -> None:
        call = self.call_of(stop)
        if call.name in EXITING:
            self.emit(render(call))
            self.v.resume()
            return
        self.v.resume(to_exit=True)
        after = self.v.wait()
        if after.kind is StopKind.EXIT:
            self.emit(render(decode_outputs(call, self.mem, after.ret)))
            self.v.resume()
            return
        self.emit(render(call))
        if after.kind not in ENDINGS:
            raise MvxError(f"unexpected {after.kind.name} stop while waiting for the exit of {call.name}")
        raise _Ended(self.ended(after))

    def ended(self, stop: Stop) -> int:
        """Report the program's end; its exit status (128+N when killed by signal N)."""
        if stop.kind is StopKind.EXITED:
            self.emit(f"+++ exited with {stop.status} +++")
            return stop.status
        self.emit(f"+++ killed by {signal.Signals(stop.status).name} +++")
        return 128 + stop.status


class _Ended(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def cmd_trace(args: argparse.Namespace) -> int:
    if not args.program:
        raise MvxError("no program given: mvx trace [OPTIONS] -- PROGRAM [ARGS...]")
    mode = Mode(args.mode)
    synced = policymod.load(args.policy).synced()
    if args.only:
        synced = set(args.only.split(","))
    cpu = None if args.no_pin else default_cpu()
    out = open(args.output, "w") if args.output else sys.stderr  # noqa: SIM115 - closed in finally
    variant = Variant(args.program, mode=mode, traps=trap_set(mode, synced), cpu=cpu)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # monitor and variant on one CPU: no cross-CPU wake-ups
    try:
        variant.start()
        tracer = Tracer(variant, out)
        try:
            return tracer.run()
        except _Ended as ended:
            return ended.status
    except KeyboardInterrupt:
        print("mvx: interrupted; the variant was killed", file=sys.stderr)
        return 130
    finally:
        variant.kill()
        if args.output:
            out.close()


def register(sub) -> None:
    p = sub.add_parser(
        "trace",
        help="run one program and print its synced syscalls strace-style",
        description="Run PROGRAM under the mvx monitor and print, strace-style, the canonical syscalls "
        "of the synced set (what an MVX run would compare). The program's own I/O passes through.",
    )
    p.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.HYBRID.value,
                   help="interception: ptrace (every syscall stops), seccomp (RET_TRACE for the synced set), "
                   "hybrid (user notification where the monitor can perform the call; default)")
    p.add_argument("--policy", default="default", choices=policymod.available(),
                   help="which syscalls are synced (default: default)")
    p.add_argument("--only", metavar="NAMES", help="trace only these canonical syscalls (comma-separated)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the trace to FILE instead of stderr")
    p.add_argument("--no-pin", action="store_true", help="do not pin the monitor and the program to one CPU")
    p.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]")
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    if args.program and args.program[0] == "--":
        args.program = args.program[1:]
    return cmd_trace(args)
