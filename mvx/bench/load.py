"""Load generators for `mvx bench`: wrk for HTTP servers, echo_load (mvx/bench/programs/echo_load.c,
built on first use) for line servers such as variants/src/epoll_server.c, which wrk cannot talk to.

Both are closed-loop: N connections, each sending its next request when the previous reply is
complete, for a fixed time. Each returns a LoadResult; latencies are in microseconds."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mvx import MvxError

PROGRAMS = Path(__file__).resolve().parent / "programs"
ECHO_SOURCE = PROGRAMS / "echo_load.c"

# wrk prints its own report; this script adds one JSON line (the last line of stdout) with the numbers.
WRK_SCRIPT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %.6f, "bytes": %d, "p50_us": %.3f, "p90_us": %.3f, ' ..
    '"p99_us": %.3f, "mean_us": %.3f, "max_us": %.3f, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration / 1e6, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class LoadResult:
    requests: int  # completed requests with a good reply
    seconds: float
    p50_us: float
    p99_us: float
    mean_us: float
    errors: int  # failed connections, resets, timeouts, non-2xx replies
    detail: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "rps": self.rps}


def _taskset(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def _last_json(out: str, what: str) -> dict:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    raise MvxError(f"{what} printed no result: {out.strip()[-200:]!r}")


def build_echo_load() -> str:
    """The echo_load binary, compiled once per source version into ~/.cache/mvx."""
    digest = hashlib.sha256(ECHO_SOURCE.read_bytes()).hexdigest()[:12]
    out = Path.home() / ".cache" / "mvx" / f"echo_load-{digest}"
    if not out.exists():
        if not shutil.which("gcc"):
            raise MvxError("mvx bench needs gcc to build its load generator (bash scripts/setup.sh)")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        r = subprocess.run(["gcc", "-O2", "-o", str(tmp), str(ECHO_SOURCE)], capture_output=True, text=True,
                           check=False)
        if r.returncode:
            raise MvxError(f"cannot build echo_load: {(r.stderr.strip().splitlines() or ['gcc failed'])[-1]}")
        tmp.rename(out)
    return str(out)


def echo_load(port: int, connections: int, seconds: float, keepalive: bool, reply_bytes: int,
              cpu: int | None) -> LoadResult:
    cmd = [*_taskset(cpu), build_echo_load(), str(port), str(connections), f"{seconds:g}", str(int(keepalive)),
           str(reply_bytes)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if r.returncode:
        raise MvxError(f"echo_load failed: {r.stderr.strip()[-200:]}")
    d = _last_json(r.stdout, "echo_load")
    return LoadResult(requests=d["requests"], seconds=d["seconds"], p50_us=d["p50_us"], p99_us=d["p99_us"],
                      mean_us=d["mean_us"], errors=d["errors"],
                      detail={"p90_us": d["p90_us"], "max_us": d["max_us"]})


def wrk_version() -> str:
    if not shutil.which("wrk"):
        return "missing"
    r = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return ((r.stdout or r.stderr).strip().splitlines() or ["?"])[0].split(" Copyright")[0]


def wrk(url: str, connections: int, seconds: float, keepalive: bool, cpu: int | None,
        timeout_s: float = 5.0) -> LoadResult:
    """wrk -t1 (the client is pinned to one CPU: more threads would only share it)."""
    if not shutil.which("wrk"):
        raise MvxError("wrk is not installed (bash scripts/setup.sh installs the Debian package)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="mvx-bench-") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        cmd = [*_taskset(cpu), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               f"--timeout={timeout_s:g}s", "-s", script.name]
        if not keepalive:
            cmd += ["-H", "Connection: close"]
        cmd.append(url)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False)
    if r.returncode:
        raise MvxError(f"wrk failed: {(r.stderr.strip() or r.stdout.strip())[-200:]}")
    d = _last_json(r.stdout, "wrk")
    errs = d["errors"]
    bad = errs["status"]  # wrk counts non-2xx/3xx replies in summary.requests too
    return LoadResult(requests=max(0, d["requests"] - bad), seconds=d["seconds"], p50_us=d["p50_us"],
                      p99_us=d["p99_us"], mean_us=d["mean_us"], errors=sum(errs.values()),
                      detail={"p90_us": d["p90_us"], "max_us": d["max_us"], "bytes": d["bytes"], "wrk_errors": errs})
