"""`mvx bench`: the A/B overhead benchmark. Servers (mvx/bench/servers.py) run natively, under mvx in
each --mode (x86_64 leader, i386 follower) and under strace as an external reference, interleaved
round by round (A B C ... A B C ...) so that drift of a shared machine hits every configuration
alike, while load generators (mvx/bench/load.py) drive them at several concurrencies. Reported:
throughput, p50/p99 latency and CPU time per request, each also as a ratio to native measured in
the same run; the targets (issues 6 and 15); the interception micro-benchmark (mvx/bench/intercept.py).
Outputs: OUT.md, OUT.json, OUT.png (matplotlib).

CPU time of a configuration is the utime+stime of every process in its tree (the server; strace
and the server; `mvx run`, its monitors and the variants), read from /proc/PID/stat of the live
tree (with the cutime+cstime of children already reaped) just before and after each load, so
neither startup nor shutdown is counted; the load generator's own CPU is not included."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mvx import MvxError
from mvx.bench import servers
from mvx.bench.load import LoadResult, wrk_version
from mvx.demo import lighttpd

ROOT = Path(__file__).resolve().parents[2]
LEADER_ARCH, FOLLOWER_ARCH = "x86_64", "i386"
MVX_MODES = ("ptrace", "seccomp", "hybrid")
DEFAULT_MODE = "hybrid"
# target values (issue 6, revised by issue 15: the data plane in C)
TARGET_THROUGHPUT = 1 / 3  # lighttpd under mvx, default mode, against native
TARGET_SPEEDUP = 3.0  # default mode against --mode ptrace, same workload
TARGET_TWO_NODE = 1 / 4  # lighttpd, `mvx leader` + `mvx follower` over TLS, against native
TARGET_INTERCEPT = 1.5  # Python monitor against a C loop of the same mechanism, per intercepted syscall
TARGET_TRACE = 1.0  # one variant under `mvx trace` against `strace -f --seccomp-bpf` on the same set
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- configurations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    name: str  # a key of CONFIGS
    label: str
    kind: str  # native | mvx | two-node | strace | trace
    mode: str | None = None
    extra: tuple[str, ...] = ()  # more `mvx run` options
    env: tuple[str, ...] = ()  # NAME=VALUE for `mvx run` (through env(1): the same process)

    def argv(self, server: servers.Server, port: int, workdir: Path, plan: Plan) -> list[str]:
        leader = server.argv(LEADER_ARCH, port, workdir)
        if self.kind == "native":
            return ["taskset", "-c", str(plan.server_cpu), *leader]
        if self.kind == "strace":
            extra = ["--seccomp-bpf", "-e", "trace=" + ",".join(plan.strace_set)] if self.mode == "seccomp" else []
            return ["taskset", "-c", str(plan.server_cpu), "strace", "-f", *extra, "-o", "/dev/null", "--", *leader]
        if self.kind == "trace":  # (it pins itself and the program to its one allowed CPU)
            return ["taskset", "-c", str(plan.server_cpu), sys.executable, "-m", "mvx", "trace", "--mode", self.mode,
                    "-o", "/dev/null", "--", *leader]
        follower = server.argv(FOLLOWER_ARCH, port, workdir)
        if self.kind == "two-node":
            return _two_node_argv(self, leader, follower, workdir, plan)
        # each variant with arguments of its own (lighttpd: its ISA's -m module directory)
        prefix = ["env", *self.env] if self.env else []
        return [*prefix, sys.executable, "-m", "mvx", "run", "--mode", self.mode, *self.extra, "--leader",
                shlex.join(leader), "--follower", shlex.join(follower)]

    def pinning(self, plan: Plan) -> str:
        if self.kind == "native":
            return f"server on CPU {plan.server_cpu}"
        if self.kind == "strace":
            return f"strace and server on CPU {plan.server_cpu}"
        if self.kind == "trace":
            return f"`mvx trace` (its monitor) and server on CPU {plan.server_cpu}"
        if self.kind == "two-node":
            return (f"`mvx leader` (monitor + x86_64 variant) on CPU {plan.cpus[0]}, `mvx follower` (monitor + "
                    f"i386 variant) on CPU {plan.follower_cpu}, with taskset")
        return (f"leader monitor + x86_64 variant on CPU {plan.cpus[0]}, follower monitor + i386 variant on CPU "
                f"{plan.follower_cpu} (mvx run pins them itself: its allowed CPUs in order); the `mvx run` parent "
                "is unpinned and idle")


CONFIGS = {c.name: c for c in [
    Config("native", "native", "native"),
    Config("ptrace", "mvx ptrace", "mvx", "ptrace"),
    Config("seccomp", "mvx seccomp", "mvx", "seccomp"),
    Config("hybrid", "mvx hybrid", "mvx", "hybrid"),
    # the same without write-behind: the program stops at each output until every follower checked it
    Config("hybrid-no-write-behind", "mvx hybrid --no-write-behind", "mvx", "hybrid", ("--no-write-behind",)),
    # the same without the in-process agent: every read of a follower traps to its monitor
    Config("hybrid-no-agent", "mvx hybrid --no-agent", "mvx", "hybrid", ("--no-agent",)),
    # the policy level that traps less: file metadata, positions and offset reads run untrapped
    Config("hybrid-relaxed", "mvx hybrid --policy relaxed", "mvx", "hybrid", ("--policy", "relaxed")),
    # the A/B of the data plane: every call the Python way (MVX_FAST=0), as before the C fast path
    Config("hybrid-python", "mvx hybrid, Python path", "mvx", "hybrid", env=("MVX_FAST=0",)),
    Config("ptrace-python", "mvx ptrace, Python path", "mvx", "ptrace", env=("MVX_FAST=0",)),
    # the two-node form: `mvx leader` and `mvx follower` as two processes, the channel TCP with mutual
    # TLS (on loopback: the channel's TLS and TCP costs, not a network's latency), the follower's
    # program in a network namespace of its own
    Config("two-node-tls", "mvx leader + follower, TLS", "two-node", "hybrid"),
    Config("two-node-tcp", "mvx leader + follower, plain TCP (--insecure)", "two-node", "hybrid", ("--insecure",)),
    Config("strace", "strace -f", "strace", None),
    Config("strace-seccomp", "strace --seccomp-bpf", "strace", "seccomp"),
    # one variant under `mvx trace` (the synced set, hybrid, rendered strace-like to /dev/null), against
    # strace --seccomp-bpf on the same set
    Config("trace", "mvx trace (one variant)", "trace", "hybrid"),
]}


def _two_node_argv(cfg: Config, leader: list[str], follower: list[str], workdir: Path, plan: Plan) -> list[str]:
    """One command for both nodes: sh starts the follower, then becomes the leader (the follower
    stays its child, so the run's process tree and group hold both). Keys are made once per workdir."""
    from mvx.cli.keygen import make_keys

    node = ["--mode", cfg.mode, *cfg.extra, "--wait", "30"]
    if "--insecure" not in cfg.extra:
        keys = workdir / "keys"
        if not (keys / "ca.pem").exists() and workdir.is_dir():
            make_keys(keys)
        node += ["--keys", str(keys)]
    chan = f"127.0.0.1:{free_port() if workdir.is_dir() else 9000}"
    mvx = [sys.executable, "-m", "mvx"]
    f = ["taskset", "-c", str(plan.follower_cpu), *mvx, "follower", "--isolate-net", "--connect", chan, *node,
         "--", *follower]
    lead = ["taskset", "-c", str(plan.cpus[0]), *mvx, "leader", "--listen", chan, *node, "--", *leader]
    return ["sh", "-c", f"{shlex.join(f)} & exec {shlex.join(lead)}"]


@dataclass
class Plan:
    servers: list[str]
    configs: list[str]
    duration: float
    rounds: int
    connections: list[int]
    out: Path
    intercept: bool = True
    profile: bool = False  # the profile run of lighttpd (mvx/bench/profile.py; the CLI turns it on)
    profile_seconds: float = 5.0
    intercept_calls: int = 20000
    intercept_reps: int = 5
    startup_timeout: float = 30.0
    command: str = ""
    cpus: list[int] = field(default_factory=lambda: sorted(os.sched_getaffinity(0)))
    strace_set: list[str] = field(default_factory=list)

    @property
    def server_cpu(self) -> int:
        return self.cpus[0]

    @property
    def follower_cpu(self) -> int:
        return self.cpus[1 % len(self.cpus)]

    @property
    def client_cpu(self) -> int:
        return self.cpus[-1]


def strace_syscalls(policy: str = "default", arch: str = LEADER_ARCH) -> list[str]:
    """The raw syscall names of `arch` behind every canonical call the policy synchronises."""
    from mvx.core import policy as policymod
    from mvx.isa import arch as archmod
    from mvx.isa.syscalls import raw_selectors

    a = archmod.get(arch)
    return sorted({a.name_of(sel.nr) for canon in policymod.load(policy).synced() for sel in raw_selectors(a, canon)})


# ---- one configuration, one round ---------------------------------------------------------------


def tree_cpu(root: int) -> tuple[float, int]:
    """(CPU seconds, process count) of `root` and every live descendant: utime+stime of each, plus
    cutime+cstime (children it has reaped). Parents are real parents, not ptrace tracers."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2:].split()
        stats[int(entry)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, count, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            count += 1
            todo.extend(children.get(pid, []))
    return total / CLK_TCK, count


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stderr_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [ln.strip() for ln in text.splitlines() if ln.strip() and "SIGTERM: stopping" not in ln]


def _reason(stderr_path: Path, fallback: str) -> str:
    """One line: `fallback`, with mvx's divergence report (its first three lines) or else the last
    line the configuration wrote to stderr."""
    lines = _stderr_lines(stderr_path)
    at = next((i for i, ln in enumerate(lines) if "DIVERGENCE" in ln), None)
    if at is not None:
        pick = "; ".join(lines[at:at + 3])
    else:
        pick = lines[-1] if lines else ""
    text = f"{fallback}: {pick}" if pick else fallback
    return text if len(text) <= 300 else text[:297] + "..."


def _exit_text(code: int) -> str:
    return f"exited with status {code}" if code >= 0 else f"killed by signal {-code}"


def _wait_up(proc: subprocess.Popen, server: servers.Server, port: int, timeout: float, errpath: Path) -> str | None:
    """None once the server answers a good request; else why not."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return _reason(errpath, f"{_exit_text(code)} before serving")
        try:
            server.probe(port, min(5.0, max(0.5, deadline - time.monotonic())))
            return None
        except (ConnectionRefusedError, ConnectionResetError):
            last = "connection refused"
        except (OSError, MvxError) as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.1)
    return _reason(errpath, f"not serving after {timeout:g}s ({last})")


def _exited_soon(proc: subprocess.Popen, timeout: float = 3.0) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _stop(proc: subprocess.Popen, cfg: Config) -> None:
    """SIGTERM (to `mvx run` alone, which stops its monitors; to the whole group otherwise: strace
    detaches on SIGTERM and would leave its tracee running), then SIGKILL to the process group."""
    pgid = proc.pid
    try:
        if proc.poll() is None:
            if cfg.kind in ("mvx", "two-node"):
                proc.send_signal(signal.SIGTERM)
            else:
                os.killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
    finally:
        try:
            os.killpg(pgid, signal.SIGKILL)  # anything left in the group (a detached tracee ...)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait()


def _failed(w: servers.Workload, rnd: int, reason: str) -> dict:
    return {"workload": w.short, "round": rnd, "ok": False, "reason": reason}


def run_round(server: servers.Server, cfg: Config, workloads: list[servers.Workload], plan: Plan, rnd: int,
              workdir: Path, progress) -> tuple[list[dict], dict]:
    """Start `cfg` once, put every workload on it in turn, stop it. Returns (per-workload runs, info)."""
    port = free_port()
    server.setup(workdir, port)
    argv = cfg.argv(server, port, workdir, plan)
    errpath = workdir / f"{server.name}-{cfg.name}-{rnd}.stderr"
    info: dict = {"config": cfg.name, "round": rnd, "argv": argv, "port": port}
    runs: list[dict] = []
    with open(errpath, "wb") as err:
        t0 = time.monotonic()
        # lighttpd.env(): the i386/arm64 builds' own libraries (their trees) on LD_LIBRARY_PATH
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
                                start_new_session=True, env=lighttpd.env())
    try:
        why = _wait_up(proc, server, port, plan.startup_timeout, errpath)
        info["startup_s"] = round(time.monotonic() - t0, 3)
        if why:
            info["failed"] = why
            progress(f"{server.name} {cfg.name} round {rnd}: FAILED: {why}")
            return [_failed(w, rnd, why) for w in workloads], info
        for _ in range(10):  # warm the server (and the monitors) up before the first measurement
            server.probe(port, 10.0)
        for i, w in enumerate(workloads):
            code = proc.poll()
            if code is not None:
                why = _reason(errpath, _exit_text(code))
                runs += [_failed(x, rnd, why) for x in workloads[i:]]
                break
            cpu0, _ = tree_cpu(proc.pid)
            try:
                res: LoadResult = server.run_load(port, w, plan.duration, plan.client_cpu)
            except MvxError as exc:
                code = _exited_soon(proc)
                why = str(exc) if code is None else _reason(errpath, f"{_exit_text(code)} under load")
                runs.append(_failed(w, rnd, why))
                progress(f"{server.name} {cfg.name} round {rnd} {w.short}: FAILED: {why}")
                continue
            cpu1, nprocs = tree_cpu(proc.pid)
            # a server that dies under load (a divergence) may take a moment to go; its errors show first
            code = proc.poll() if res.errors <= res.requests else _exited_soon(proc)
            if code is not None:
                why = _reason(errpath, f"{_exit_text(code)} under load")
                runs.append(_failed(w, rnd, why))
                progress(f"{server.name} {cfg.name} round {rnd} {w.short}: FAILED: {why}")
                continue
            if res.requests == 0:
                why = f"no request completed in {res.seconds:.1f}s ({res.errors} errors)"
                runs.append(_failed(w, rnd, why))
                progress(f"{server.name} {cfg.name} round {rnd} {w.short}: FAILED: {why}")
                continue
            cpu = max(0.0, cpu1 - cpu0)
            runs.append({"workload": w.short, "round": rnd, "ok": True, **res.to_json(), "cpu_s": cpu,
                         "cpu_per_req_us": cpu / res.requests * 1e6, "processes": nprocs})
            progress(f"{server.name} {cfg.name} round {rnd} {w.short}: {res.rps:.0f} req/s, p50 "
                     f"{res.p50_us / 1000:.2f} ms, p99 {res.p99_us / 1000:.2f} ms, "
                     f"{cpu / res.requests * 1e6:.0f} us CPU/req" + (f", {res.errors} errors" if res.errors else ""))
    except (OSError, MvxError) as exc:  # the warm-up requests failed
        why = _reason(errpath, f"stopped answering: {exc}")
        done = {r["workload"] for r in runs}
        runs += [_failed(w, rnd, why) for w in workloads if w.short not in done]
        info["failed"] = why
        progress(f"{server.name} {cfg.name} round {rnd}: FAILED: {why}")
    finally:
        _stop(proc, cfg)
        info["exit"] = proc.returncode
        if info.get("failed") or any(not r["ok"] for r in runs):
            info["stderr_tail"] = _stderr_lines(errpath)[-20:]
    return runs, info


# ---- the whole benchmark ------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


METRICS = ("rps", "p50_us", "p99_us", "cpu_per_req_us")
EXTRA = ("errors",)


def summarise(runs: list[dict], workloads: list[servers.Workload], configs: list[str]) -> dict:
    """Per config and workload: the median over ok rounds of each metric and its ratio to native."""
    table: dict = {}
    for cfg in configs:
        table[cfg] = {}
        for w in workloads:
            mine = [r for r in runs if r["config"] == cfg and r["workload"] == w.short]
            ok = [r for r in mine if r["ok"]]
            cell: dict = {"rounds": len(mine), "ok_rounds": len(ok)}
            if ok:
                cell.update({m: _median([r[m] for r in ok]) for m in METRICS + EXTRA})
            else:
                cell["failed"] = next((r["reason"] for r in mine if not r["ok"]), "not run")
            if len(ok) < len(mine):
                cell["failed_rounds"] = sorted({r["reason"] for r in mine if not r["ok"]})
            table[cfg][w.short] = cell
    native = table.get("native", {})
    for cfg in configs:
        for w in workloads:
            cell, base = table[cfg][w.short], native.get(w.short, {})
            if "rps" in cell and "rps" in base:
                cell["ratio"] = {m: (cell[m] / base[m] if base[m] else None) for m in METRICS}
    geo = {}
    for cfg in configs:
        cells = [table[cfg][w.short] for w in workloads if "ratio" in table[cfg][w.short]]
        geo[cfg] = {"points": len(cells), **{m: _geomean([c["ratio"][m] for c in cells]) for m in METRICS}}
    return {"cells": table, "geomean_ratio": geo}


def _target(name: str, value: float | None, target: float, higher_is_better: bool, unit: str, why_missing: str = "",
            detail: str = "") -> dict:
    if value is None:
        return {"name": name, "target": target, "value": None, "met": None,
                "text": f"not measured{': ' + why_missing if why_missing else ''}"}
    met = value >= target if higher_is_better else value <= target
    short = target / value if higher_is_better else value / target
    text = f"{value:.3g}{unit} (target {'>=' if higher_is_better else '<='} {target:.3g}{unit}): " + (
        "met" if met else f"**missed** by {short:.3g}x")
    return {"name": name, "target": target, "value": value, "met": met, "shortfall_factor": None if met else short,
            "text": text + (f"; {detail}" if detail else "")}


def targets(result: dict) -> list[dict]:
    out = []
    lt = result["servers"].get("lighttpd")
    if lt:
        cells = lt["summary"]["cells"]
        geo = lt["summary"]["geomean_ratio"].get(DEFAULT_MODE, {})
        ratios = [c["ratio"]["rps"] for c in cells.get(DEFAULT_MODE, {}).values() if "ratio" in c]
        why = "" if ratios else _why_missing(cells, DEFAULT_MODE)
        detail = f"{len(ratios)} workload points, range {min(ratios):.3g}-{max(ratios):.3g}" if ratios else ""
        out.append(_target(f"lighttpd throughput under mvx ({DEFAULT_MODE}, 2 variants) / native, geometric mean",
                           geo.get("rps") if ratios else None, TARGET_THROUGHPUT, True, "x", why, detail))
        if "two-node-tls" in cells:
            geo2 = lt["summary"]["geomean_ratio"].get("two-node-tls", {})
            r2 = [c["ratio"]["rps"] for c in cells["two-node-tls"].values() if "ratio" in c]
            out.append(_target("lighttpd throughput, two nodes over TLS (`mvx leader` + `mvx follower`) / native, "
                               "geometric mean", geo2.get("rps") if r2 else None, TARGET_TWO_NODE, True, "x",
                               "" if r2 else _why_missing(cells, "two-node-tls"),
                               f"{len(r2)} workload points, range {min(r2):.3g}-{max(r2):.3g}" if r2 else ""))
    for name, srv in result["servers"].items():
        cells = srv["summary"]["cells"]
        if DEFAULT_MODE not in cells or "ptrace" not in cells:
            continue
        pairs = [(cells[DEFAULT_MODE][w]["rps"], cells["ptrace"][w]["rps"]) for w in cells[DEFAULT_MODE]
                 if "rps" in cells[DEFAULT_MODE][w] and "rps" in cells["ptrace"].get(w, {})]
        speed = _geomean([a / b for a, b in pairs]) if pairs else None
        why = "" if pairs else (_why_missing(cells, DEFAULT_MODE) or _why_missing(cells, "ptrace"))
        out.append(_target(f"{name}: throughput of --mode {DEFAULT_MODE} / --mode ptrace, geometric mean",
                           speed, TARGET_SPEEDUP, True, "x", why, f"{len(pairs)} workload points" if pairs else ""))
    for name, srv in result["servers"].items():
        cells = srv["summary"]["cells"]
        if "trace" not in cells or "strace-seccomp" not in cells:
            continue
        pairs = [(cells["trace"][w]["rps"], cells["strace-seccomp"][w]["rps"]) for w in cells["trace"]
                 if "rps" in cells["trace"][w] and "rps" in cells["strace-seccomp"].get(w, {})]
        out.append(_target(f"{name}: throughput under `mvx trace` / `strace -f --seccomp-bpf` (one variant, the same "
                           "synced set), geometric mean", _geomean([a / b for a, b in pairs]) if pairs else None,
                           TARGET_TRACE, True, "x",
                           "" if pairs else (_why_missing(cells, "trace") or _why_missing(cells, "strace-seccomp")),
                           f"{len(pairs)} workload points" if pairs else ""))
    for row in result.get("intercept", {}).get("rows", []):
        if row.get("c_us"):
            out.append(_target(f"interception, {row['mode']} {row['action']}: Python monitor / C loop per syscall",
                               row["python_us"] / row["c_us"], TARGET_INTERCEPT, False, "x"))
    if result.get("intercept", {}).get("failed"):
        out.append(_target("interception: Python monitor / C loop per syscall", None, TARGET_INTERCEPT, False, "x",
                           result["intercept"]["failed"]))
    return out


def _why_missing(cells: dict, cfg: str) -> str:
    reasons = [c.get("failed") for c in cells.get(cfg, {}).values() if c.get("failed")]
    return f"{cfg} failed: {reasons[0]}" if reasons else (f"{cfg} not run" if cfg not in cells else "")


def machine_info() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    strace = subprocess.run(["strace", "-V"], capture_output=True, text=True, check=False).stdout.splitlines() \
        if shutil.which("strace") else []
    return {"cpu_model": model, "cpu_count": os.cpu_count(), "allowed_cpus": sorted(os.sched_getaffinity(0)),
            "kernel": platform.release(), "python": platform.python_version(), "wrk": wrk_version(),
            "strace": strace[0] if strace else "missing", "hostname": platform.node()}


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def git_info() -> dict:
    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True, check=False)
        return r.stdout.strip() if r.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def check(plan: Plan) -> None:
    for name in plan.servers:
        servers.get(name).check([LEADER_ARCH] + ([FOLLOWER_ARCH] if any(CONFIGS[c].kind in ("mvx", "two-node") for c in plan.configs)
                                                 else []))
    if "lighttpd" in plan.servers and not shutil.which("wrk"):
        raise MvxError("wrk is not installed (bash scripts/setup.sh installs it)")
    if any(CONFIGS[c].kind == "strace" for c in plan.configs) and not shutil.which("strace"):
        raise MvxError("strace is not installed (bash scripts/setup.sh installs it)")
    if not shutil.which("taskset"):
        raise MvxError("taskset (util-linux) is not installed")


def run_intercept(plan: Plan, progress) -> dict:
    from mvx.bench import intercept as bench_intercept

    progress(f"interception micro-benchmark ({plan.intercept_calls} calls, {plan.intercept_reps} reps)")
    affinity = os.sched_getaffinity(0)
    try:
        rows = bench_intercept.measure("x86_64", plan.intercept_calls, plan.intercept_reps, plan.cpus[0])
    except MvxError as exc:
        return {"failed": str(exc)}
    finally:
        os.sched_setaffinity(0, affinity)  # measure() pins this process; the servers must not inherit that
    cmd = f"mvx bench (bench_intercept.measure x86_64, {plan.intercept_calls} calls, {plan.intercept_reps} reps)"
    return {"rows": rows, "calls": plan.intercept_calls, "reps": plan.intercept_reps,
            "markdown": bench_intercept.markdown(rows, "x86_64", plan.intercept_calls, plan.intercept_reps, cmd)}


def run_profile(plan: Plan, progress) -> dict:
    """Where the time goes under mvx: a py-spy profile of both monitors under lighttpd load."""
    from mvx.bench import profile as bench_profile

    with tempfile.TemporaryDirectory(prefix="mvx-bench-profile-") as tmp:
        try:
            return bench_profile.profile_lighttpd(Path(tmp), free_port(), plan.profile_seconds, plan.client_cpu,
                                                  progress)
        except (MvxError, OSError, subprocess.SubprocessError) as exc:
            progress(f"profile failed: {exc}")
            return {"failed": str(exc)}


def run(plan: Plan, progress=None) -> dict:
    """Run the benchmark of `plan`, write OUT.{json,md,png}, and return the result."""
    if progress is None:
        def progress(msg: str) -> None:
            print(f"mvx bench: {msg}", file=sys.stderr, flush=True)
    check(plan)
    plan.strace_set = strace_syscalls()
    started = time.monotonic()
    result: dict = {
        "command": plan.command, "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git": git_info(), "machine": machine_info(), "loadavg_start": _loadavg(),
        "settings": {"servers": plan.servers, "configs": plan.configs, "duration_s": plan.duration,
                     "rounds": plan.rounds, "connections": plan.connections, "leader": LEADER_ARCH,
                     "follower": FOLLOWER_ARCH, "startup_timeout_s": plan.startup_timeout},
        "pinning": {"cpus": plan.cpus, "client": f"load generator on CPU {plan.client_cpu}",
                    **{c: CONFIGS[c].pinning(plan) for c in plan.configs}},
        "strace_seccomp_set": plan.strace_set,
        "cpu_time": "utime+stime of every process of the configuration (the server; strace and the server; "
                    "`mvx run`, its monitors and variants), from /proc/PID/stat of the live tree plus cutime+cstime "
                    "of reaped children, read just before and after each load; the load generator is not counted",
        "notes": [], "servers": {},
    }
    if plan.intercept:
        result["intercept"] = run_intercept(plan, progress)
    total_runs, done_runs, runs_started = len(plan.servers) * plan.rounds * len(plan.configs), 0, time.monotonic()

    def announce(name: str, cname: str, rnd: int, points: int) -> None:
        """Which run, which of how many, and (after the first) about how long the rest takes."""
        left = ""
        if done_runs:
            secs = (time.monotonic() - runs_started) / done_runs * (total_runs - done_runs)
            left = f", about {secs / 60:.0f} min left" if secs >= 90 else f", about {secs:.0f} s left"
        progress(f"{name} {cname} round {rnd}/{plan.rounds}: run {done_runs + 1} of {total_runs} "
                 f"({points} points){left}")

    with tempfile.TemporaryDirectory(prefix="mvx-bench-") as tmp:
        for name in plan.servers:
            server = servers.get(name)
            workloads = server.workloads(plan.connections)
            workdir = Path(tmp) / name
            workdir.mkdir()
            runs: list[dict] = []
            starts: list[dict] = []
            given_up: dict[str, str] = {}
            for rnd in range(1, plan.rounds + 1):
                for cname in plan.configs:  # A B C ... in every round
                    if cname in given_up:
                        runs += [{**_failed(w, rnd, given_up[cname]), "config": cname} for w in workloads]
                        total_runs -= 1
                        continue
                    announce(name, cname, rnd, len(workloads))
                    rr, info = run_round(server, CONFIGS[cname], workloads, plan, rnd, workdir, progress)
                    done_runs += 1
                    runs += [{**r, "config": cname} for r in rr]
                    starts.append(info)
                    if info.get("failed") and not any(r["ok"] for r in rr):
                        given_up[cname] = f"{info['failed']} (round {rnd}; not retried)"
            result["servers"][name] = {
                "description": server.description,
                "workloads": [w.to_json() | {"short": w.short} for w in workloads],
                "configs": {c: {"label": CONFIGS[c].label, "argv_example": _example_argv(server, CONFIGS[c], plan),
                                "pinning": CONFIGS[c].pinning(plan)} for c in plan.configs},
                "starts": starts, "runs": runs, "summary": summarise(runs, workloads, plan.configs),
            }
    if plan.profile and "lighttpd" in plan.servers:
        result["profile"] = run_profile(plan, progress)
    result["targets"] = targets(result)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    result["loadavg_end"] = _loadavg()
    write_outputs(result, plan)
    return result


def _example_argv(server: servers.Server, cfg: Config, plan: Plan) -> str:
    argv = cfg.argv(server, 8000, Path("/tmp/mvx-bench-XXXX") / server.name, plan)
    if cfg.kind == "strace" and cfg.mode:
        argv = [a if not a.startswith("trace=") else "trace=<the synced set>" for a in argv]
    argv = ["python3" if a == sys.executable else a for a in argv]
    return shlex.join(argv).replace(f"{ROOT}/", "")


# ---- outputs ------------------------------------------------------------------------------------


def write_outputs(result: dict, plan: Plan) -> None:
    out = plan.out
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    result["plot"] = plot(result, png)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(result, png.name))


def _fmt_rps(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _fmt_ms(us: float) -> str:
    return f"{us / 1000:.3g}"


def _fmt_us(us: float) -> str:
    return f"{us:,.0f}" if us >= 100 else f"{us:.3g}"


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.3g}x"


def markdown(result: dict, png_name: str | None) -> str:
    s = result["settings"]
    g = result["git"]
    m = result["machine"]
    L = [
        "# mvx benchmarks: servers under mvx against native",
        "",
        "Generated by `mvx bench` (`just bench`); do not edit by hand. Command:",
        "",
        "```",
        result["command"],
        "```",
        "",
        (f"Run {result['started']} at git {g['commit'][:12]}{' (with uncommitted changes)' if g['dirty'] else ''}, "
        f"took {result['elapsed_s'] / 60:.1f} min. Machine: {m['cpu_model']}, {m['cpu_count']} CPUs "
        f"(allowed {m['allowed_cpus']}), Linux {m['kernel']}, Python {m['python']}, {m['wrk']}, {m['strace']}. "
        f"Load average {result['loadavg_start']} at the start, {result['loadavg_end']} at the end (the machine is "
        "shared: the interleaving below is what keeps the ratios fair)."),
        "",
        "## Targets",
        "",
        "Reported, not asserted (issues 6 and 15).",
        "",
    ]
    for t in result["targets"]:
        L.append(f"- {t['name']}: {t['text']}")
    L += [
        "",
        "## How",
        "",
        (f"Every configuration serves the same workloads in {s['rounds']} interleaved round(s) (in each round the "
        f"configurations in the order {', '.join(s['configs'])}), {s['duration_s']:g} s of load per workload point "
        "and round; "
        "each configuration's server is started once per round, answers 10 warm-up requests, then gets every "
        "workload point in turn. Startup is not timed. Numbers are medians over the rounds; a ratio is the "
        "configuration's median over native's median from the same run (throughput: higher is better; latency "
        "and CPU: lower is better). Variants: x86_64 leader, i386 follower (mvx); x86_64 alone otherwise. "
        "Throughput counts good replies only; errors (failed connects, resets, timeouts, non-2xx answers, as the "
        "load generator counts them) are shown beside it. A configuration that exits under load (a divergence) "
        "or answers nothing is marked failed with its reason."),
        "",
        f"CPU time per request: {result['cpu_time']}.",
        "",
        f"Pinning: {result['pinning']['client']}; each configuration as in the table below.",
        "",
        (f"`strace --seccomp-bpf` traces the x86_64 syscalls behind the default policy's synced set "
        f"({len(result['strace_seccomp_set'])} names: {', '.join(result['strace_seccomp_set'])})."),
        "",
    ]
    for note in result["notes"]:
        L += [f"Note: {note}", ""]
    if png_name and result.get("plot") == "ok":
        L += [f"![throughput and latency per configuration]({png_name})", ""]
    elif result.get("plot"):
        L += [f"(No plot: {result['plot']}.)", ""]
    for name, srv in result["servers"].items():
        L += _server_markdown(name, srv)
    prof = result.get("profile")
    if prof:
        from mvx.bench import profile as bench_profile

        if prof.get("failed"):
            L += ["## Where the time goes (profile)", "", f"Failed: {prof['failed']}", ""]
        else:
            L += [*bench_profile.markdown(prof), ""]
    ic = result.get("intercept")
    if ic:
        L += ["## Interception cost per syscall (mvx/bench/intercept.py, same run)", ""]
        if ic.get("failed"):
            L += [f"Failed: {ic['failed']}", ""]
        else:
            L += [ic["markdown"].rstrip(), ""]
    return "\n".join(L).rstrip() + "\n"


def _server_markdown(name: str, srv: dict) -> list[str]:
    cells = srv["summary"]["cells"]
    configs = list(srv["configs"])
    labels = {c: srv["configs"][c]["label"] for c in configs}
    L = [f"## {name}", "", srv["description"] + ".", "",
         "| configuration | command (port and paths vary) | pinning |", "|---|---|---|"]
    for c in configs:
        L.append(f"| {labels[c]} | `{srv['configs'][c]['argv_example']}` | {srv['configs'][c]['pinning']} |")
    L += ["", "Geometric mean over the workload points of each ratio to native:", "",
          "| configuration | points | throughput | p50 latency | p99 latency | CPU time / request |",
          "|---|---|---|---|---|---|"]
    for c in configs:
        g = srv["summary"]["geomean_ratio"][c]
        L.append(f"| {labels[c]} | {g['points']} | {_ratio(g['rps'])} | {_ratio(g['p50_us'])} | "
                 f"{_ratio(g['p99_us'])} | {_ratio(g['cpu_per_req_us'])} |")
    failures: dict[str, int] = {}

    def cell(c: str, w: str, metric: str, fmt) -> str:
        x = cells[c][w]
        if metric not in x:
            key = f"{labels[c]}: {x['failed']}"
            failures.setdefault(key, len(failures) + 1)
            return f"failed [{failures[key]}]"
        text = fmt(x[metric])
        if c != "native" and "ratio" in x and x["ratio"][metric] is not None:
            text += f" ({x['ratio'][metric]:.3g}x)"
        if metric == "rps" and x.get("errors"):
            text += f", {x['errors']:.0f} errors"
        if x.get("failed_rounds"):
            key = f"{labels[c]}: {x['rounds'] - x['ok_rounds']} of {x['rounds']} rounds failed: " \
                  f"{x['failed_rounds'][0]}"
            failures.setdefault(key, len(failures) + 1)
            text += f" [{failures[key]}]"
        return text

    for title, metric, fmt in [("Throughput (requests/s; ratio to native)", "rps", _fmt_rps),
                               ("p50 latency (ms; ratio to native)", "p50_us", _fmt_ms),
                               ("p99 latency (ms; ratio to native)", "p99_us", _fmt_ms),
                               ("CPU time per request (us; ratio to native)", "cpu_per_req_us", _fmt_us)]:
        L += ["", f"{title}:", "", "| workload | " + " | ".join(labels[c] for c in configs) + " |",
              "|---|" + "---|" * len(configs)]
        for w in srv["workloads"]:
            L.append(f"| {w['name']} | " + " | ".join(cell(c, w["short"], metric, fmt) for c in configs) + " |")
    if failures:
        L += ["", "Failures:", "", "| | configuration: reason |", "|---|---|"]
        for key, i in failures.items():
            L.append(f"| [{i}] | {key.replace('|', '/')} |")
    L.append("")
    return L


def plot(result: dict, path: Path) -> str:
    """Throughput, p50 and p99 latency per workload point and configuration (log scales)."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (bash scripts/setup.sh installs it)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["servers"])
    if not names:
        return "no server measured"
    fig, axes = plt.subplots(len(names), 3, figsize=(20, 4.8 * len(names)), squeeze=False)
    colors = plt.get_cmap("tab10")
    for row, name in zip(axes, names):
        srv = result["servers"][name]
        cells = srv["summary"]["cells"]
        configs = list(srv["configs"])
        wl = srv["workloads"]
        width = 0.8 / len(configs)
        for ax, (metric, title, scale) in zip(row, [("rps", "throughput (requests/s)", 1.0),
                                                    ("p50_us", "p50 latency (ms)", 1e-3),
                                                    ("p99_us", "p99 latency (ms)", 1e-3)]):
            for i, c in enumerate(configs):
                xs, ys = [], []
                for j, w in enumerate(wl):
                    v = cells[c][w["short"]].get(metric)
                    if v:
                        xs.append(j + (i - (len(configs) - 1) / 2) * width)
                        ys.append(v * scale)
                ax.bar(xs, ys, width, label=srv["configs"][c]["label"], color=colors(i))
            ax.set_yscale("log")
            ax.set_title(f"{name}: {title}")
            ax.set_xticks(range(len(wl)))
            ax.set_xticklabels([w["short"] for w in wl], rotation=35, ha="right", fontsize=8)
            ax.grid(axis="y", which="major", alpha=0.3)
        row[0].legend(fontsize=8)
    fig.suptitle(f"mvx bench ({result['started']}, git {result['git']['commit'][:10]}); missing bar = failed")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return "ok"
