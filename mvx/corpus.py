"""python3 -m mvx.corpus: run the syscall corpus (tests/corpus/*.c, built into build/corpus/<arch>/
by scripts/build_variants.sh) natively and under `mvx run`, and print a table.

Each program runs natively on x86_64 and on i386 (the two outputs must agree: that is the
reference), then under `mvx run` in each mode and both directions (x86_64 leader with an i386
follower, and the reverse), each run in a fresh temporary directory (its cwd) with a timeout.
A case is `pass` (exit 0, the leader's output is the reference), `divergence <kind>` (from the
--log JSON), `error <one line>`, `output differs` or `timeout`."""

from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "build" / "corpus"
SOURCES = ROOT / "tests" / "corpus"
MODES = ["hybrid", "seccomp", "ptrace"]
DIRECTIONS = {"x86_64-i386": ("x86_64", "i386"), "i386-x86_64": ("i386", "x86_64")}
DIVERGENCE_EXIT = 70


@dataclass
class Result:
    program: str
    mode: str
    direction: str
    status: str  # pass | divergence <kind> | error <line> | output differs | timeout
    detail: str = ""  # first line that says why (divergence: the leader's and follower's calls)
    seconds: float = 0.0  # how long the mvx run took


def programs(pattern: str | None = None) -> list[str]:
    """The corpus programs (by source), filtered by a substring or glob."""
    names = sorted(p.stem for p in SOURCES.glob("*.c"))
    if pattern:
        names = [n for n in names if pattern in n or fnmatch.fnmatch(n, pattern)]
    return names


def binary(arch: str, program: str) -> Path:
    path = CORPUS / arch / program
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: run `just variants` (scripts/build_variants.sh)")
    return path


def _run(argv: list[str], timeout: float, log: Path | None = None) -> tuple[int | None, str, str]:
    """Run argv in a fresh temporary cwd (removed after); None as status on timeout."""
    with tempfile.TemporaryDirectory(prefix="mvx-corpus-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen(argv, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            rc = None
        return rc, out.decode(errors="replace"), err.decode(errors="replace")


def reference(program: str, timeout: float = 30) -> tuple[str | None, str]:
    """(the native output, "") or (None, why): both ISAs natively, exit 0, same output."""
    outs = {}
    for arch in ("x86_64", "i386"):
        rc, out, err = _run([str(binary(arch, program))], timeout)
        if rc != 0:
            why = "timeout" if rc is None else f"exit {rc}"
            return None, f"native {arch}: {why}: {_last(out) or _first(err)}"
        outs[arch] = out
    if outs["x86_64"] != outs["i386"]:
        return None, "native x86_64 and i386 outputs differ: " + _first_difference(outs["x86_64"], outs["i386"])
    return outs["x86_64"], ""


def run_case(program: str, mode: str, direction: str, ref: str, timeout: float = 60) -> Result:
    leader, follower = DIRECTIONS[direction]
    with tempfile.TemporaryDirectory(prefix="mvx-corpus-log-") as logdir:
        log = Path(logdir) / "log.json"
        argv = [sys.executable, "-m", "mvx", "run", "--mode", mode, "--log", str(log),
                "--leader", shlex.quote(str(binary(leader, program))),
                "--follower", shlex.quote(str(binary(follower, program)))]
        start = time.monotonic()
        rc, out, err = _run(argv, timeout)
        events = _events(log)
    res = Result(program, mode, direction, "pass", seconds=round(time.monotonic() - start, 2))
    div = next((e for e in events if e.get("event") == "divergence"), None)
    if div is None or div.get("kind") == "channel":
        # the leader may log only the lost channel when the follower's report did not reach it
        div = _stderr_divergence(err) or div
    if rc is None:
        res.status, res.detail = "timeout", f"no end within {timeout:g} s; " + (_first(err) or _last(out))
    elif div is not None:
        res.status = f"divergence {div.get('kind')}"
        res.detail = f"leader: {div.get('leader')} | follower: {div.get('follower')}"
        if div.get("detail"):
            res.detail += f" | {_first(div['detail'])}"
    elif rc == DIVERGENCE_EXIT or rc not in (0, 1) or (rc == 1 and err.strip()):
        res.status, res.detail = f"error {_first(err) or f'exit {rc}'}", f"exit {rc}"
    elif out != ref or rc != 0:
        res.status, res.detail = "output differs", f"exit {rc}; " + _first_difference(ref, out)
    return res


def _stderr_divergence(err: str) -> dict | None:
    """The first divergence block mvx printed on stderr ("mvx: DIVERGENCE (kind) ...", then
    "  leader: ...", "  follower: ...", the detail), other than a lost channel."""
    lines = err.splitlines()
    for i, ln in enumerate(lines):
        m = re.search(r"DIVERGENCE \((\w+)\)", ln)
        if m and m.group(1) != "channel":
            div = {"kind": m.group(1)}
            for nxt in lines[i + 1:i + 4]:
                key, _, val = nxt.strip().partition(": ")
                if key in ("leader", "follower"):
                    div[key] = val.strip()
                elif "detail" not in div and nxt.strip():
                    div["detail"] = nxt.strip()
            return div
    return None


def _events(log: Path) -> list[dict]:
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return []
    events = []
    for ln in lines:
        try:
            events.append(json.loads(ln))
        except ValueError:
            pass
    return events


def _first(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def _last(text: str) -> str:
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")


def _first_difference(want: str, got: str) -> str:
    a, b = want.splitlines(), got.splitlines()
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"line {i + 1}: expected {x!r}, got {y!r}"
    if len(a) != len(b):
        i = min(len(a), len(b))
        return f"line {i + 1}: expected {a[i] if i < len(a) else 'end'!r}, got {b[i] if i < len(b) else 'end'!r}"
    return "same lines"


def run_all(names: list[str], modes: list[str], directions: list[str], jobs: int = 1,
            timeout: float = 60, progress=None) -> list[Result]:
    refs = {n: reference(n) for n in names}
    cases = [(n, m, d) for n in names for m in modes for d in directions]

    def one(case):
        n, m, d = case
        ref, why = refs[n]
        r = Result(n, m, d, f"error {why}") if ref is None else run_case(n, m, d, ref, timeout)
        if progress:
            progress(r)
        return r

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, cases))


def table(results: list[Result], modes: list[str], directions: list[str]) -> str:
    cols = [(m, d) for m in modes for d in directions]
    cell = {(r.program, r.mode, r.direction): r.status for r in results}
    names = sorted({r.program for r in results})
    heads = [f"{m} {d}" for m, d in cols]
    widths = [max([len(h)] + [len(cell.get((n, m, d), "")) for n in names]) for h, (m, d) in zip(heads, cols)]
    w0 = max([len("program")] + [len(n) for n in names])
    lines = ["  ".join(["program".ljust(w0)] + [h.ljust(w) for h, w in zip(heads, widths)]).rstrip()]
    for n in names:
        lines.append("  ".join([n.ljust(w0)] + [cell.get((n, m, d), "").ljust(w)
                                                 for (m, d), w in zip(cols, widths)]).rstrip())
    bad = [r for r in results if r.status != "pass"]
    if bad:
        lines.append("")
        lines += [f"{r.program} {r.mode} {r.direction}: {r.status}: {r.detail}" for r in bad]
    passed = len(results) - len(bad)
    lines.append(f"\n{passed}/{len(results)} pass")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m mvx.corpus", description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", metavar="PATTERN", help="only programs whose name contains PATTERN (or matches the glob)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated modes (default: %(default)s)")
    ap.add_argument("--directions", default=",".join(DIRECTIONS), help="comma-separated (default: %(default)s)")
    ap.add_argument("--json", metavar="FILE", help="write every result as JSON to FILE")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="cases run at once (default 1)")
    ap.add_argument("--timeout", type=float, default=60, help="seconds per run (default %(default)s)")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    directions = [d for d in args.directions.split(",") if d]
    bad = [m for m in modes if m not in MODES] + [d for d in directions if d not in DIRECTIONS]
    if bad:
        ap.error(f"unknown mode/direction: {', '.join(bad)}")
    names = programs(args.k)
    if not names:
        ap.error(f"no corpus program matches {args.k!r}")
    try:
        for n in names:
            for arch in ("x86_64", "i386"):
                binary(arch, n)
    except FileNotFoundError as e:
        print(f"mvx.corpus: {e}", file=sys.stderr)
        return 2
    results = run_all(names, modes, directions, args.jobs, args.timeout,
                      progress=lambda r: print(f"  {r.program} {r.mode} {r.direction}: {r.status}", file=sys.stderr))
    print(table(results, modes, directions))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 0 if all(r.status == "pass" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
