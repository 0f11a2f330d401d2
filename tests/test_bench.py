"""`mvx bench` smoke test: the harness itself works. Each configuration runs for a moment on the
epoll server (lighttpd natively only), and the numbers must be produced and sane (non-zero
throughput and CPU time, latency > 0, ratios to native); no target is asserted. A configuration that
fails is reported as failed with a reason, and the run goes on. Nothing may outlive the run."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mvx.bench import harness as bench
from mvx.bench import servers
from tests._variants import variant_bin

ROOT = Path(__file__).resolve().parent.parent
ALL = list(bench.CONFIGS)
pytestmark = pytest.mark.slow  # a few seconds per mvx configuration


def plan(tmp_path: Path, server: str, configs: list[str], duration: float, conns: list[int]) -> bench.Plan:
    return bench.Plan(servers=[server], configs=configs, duration=duration, rounds=1, connections=conns,
                      out=tmp_path / f"bench-{server}", intercept=False, startup_timeout=20, command="(test)")


def quiet(_msg: str) -> None:
    pass


def assert_nothing_left(result: dict) -> None:
    for srv in result["servers"].values():
        for start in srv["starts"]:
            with socket.socket() as s, pytest.raises(ConnectionRefusedError):
                s.connect(("127.0.0.1", start["port"]))


def assert_sane(cell: dict, what: str) -> None:
    assert "failed" not in cell, f"{what}: {cell.get('failed')}"
    assert cell["rps"] > 0, what
    assert 0 < cell["p50_us"] <= cell["p99_us"], what
    assert cell["cpu_per_req_us"] > 0, what


def test_epoll_every_configuration(tmp_path):
    variant_bin("x86_64", "epoll_server")
    variant_bin("i386", "epoll_server")
    said: list[str] = []
    result = bench.run(plan(tmp_path, "epoll", ALL, 0.3, [2]), progress=said.append)
    srv = result["servers"]["epoll"]
    # progress: a line per run (which, of how many, time left after the first) and one per point
    runs_said = [m for m in said if " of " in m and "points" in m]
    assert len(runs_said) == len(ALL) and runs_said[0].endswith(f"run 1 of {len(ALL)} (2 points)")
    assert all(" left" in m for m in runs_said[1:]), runs_said
    assert sum(" req/s" in m for m in said) == 2 * len(ALL)
    cells = srv["summary"]["cells"]
    assert set(cells) == set(ALL)
    assert [w["short"] for w in srv["workloads"]] == ["c2 ka", "c2 close"]
    for cfg in ALL:
        for w, cell in cells[cfg].items():
            assert_sane(cell, f"{cfg} {w}")
            assert cell["ratio"]["rps"] > 0
        assert srv["summary"]["geomean_ratio"][cfg]["points"] == 2
    assert cells["native"]["c2 ka"]["ratio"]["rps"] == pytest.approx(1.0)
    # mvx runs a monitor per variant: its process tree is bigger than the server alone
    runs = {(r["config"], r["workload"]): r for r in srv["runs"]}
    assert runs[("native", "c2 ka")]["processes"] == 1
    assert runs[("hybrid", "c2 ka")]["processes"] >= 4
    assert any("hybrid / --mode ptrace" in t["name"] for t in result["targets"])
    # the three outputs, and the JSON holds what the Markdown shows
    out = tmp_path / "bench-epoll"
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["pinning"]["hybrid"].startswith("leader monitor")
    assert data["strace_seccomp_set"] and "accept4" in data["strace_seccomp_set"]
    md = out.with_suffix(".md").read_text()
    assert "| c2 keep-alive | " in md and "mvx hybrid" in md and "(test)" in md
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert_nothing_left(result)


def test_lighttpd_native(tmp_path):
    servers.get("lighttpd").check(["x86_64"])
    result = bench.run(plan(tmp_path, "lighttpd", ["native"], 1, [2]), progress=quiet)
    cells = result["servers"]["lighttpd"]["summary"]["cells"]["native"]
    assert len(cells) == 4  # keep-alive or not, small or large file
    for w, cell in cells.items():
        assert_sane(cell, w)
    assert cells["c2 ka large"]["rps"] < cells["c2 ka small"]["rps"]
    assert_nothing_left(result)


def test_failing_configuration_is_reported(tmp_path, monkeypatch):
    """A server that never comes up: recorded as failed with its reason, not retried, not fatal."""
    broken = servers.Server(
        name="broken", description="exits at once", binary=lambda arch: Path("/bin/sh"),
        args=lambda arch, port, workdir: ["-c", "echo broken: cannot serve >&2; exit 3"],
        setup=lambda workdir, port: None, probe=servers.get("epoll").probe,
        workloads=lambda conns: [servers.Workload(c, True) for c in conns],
        run_load=servers.get("epoll").run_load, build_hint="-")
    monkeypatch.setitem(servers.SERVERS, "broken", broken)
    p = plan(tmp_path, "broken", ["native", "hybrid"], 0.3, [1, 2])
    p.rounds = 2
    result = bench.run(p, progress=quiet)
    cells = result["servers"]["broken"]["summary"]["cells"]
    for cfg in ("native", "hybrid"):
        for cell in cells[cfg].values():
            assert "broken: cannot serve" in cell["failed"], cell
            assert "exited with status" in cell["failed"]
    srv = result["servers"]["broken"]
    assert len(srv["starts"]) == 2  # round 2 did not start them again ...
    assert all("not retried" in r["reason"] for r in srv["runs"] if r["round"] == 2)  # ... but says so
    md = (tmp_path / "bench-broken.md").read_text()
    assert "failed [1]" in md and "broken: cannot serve" in md
    assert_nothing_left(result)


def test_cli_errors():
    for args, msg in [(["--server", "nginx"], "unknown server 'nginx'"),
                      (["--modes", "fast"], "unknown configuration 'fast'"),
                      (["--connections", "0"], "positive integers"),
                      (["--duration", "0"], "--duration must be positive")]:
        r = subprocess.run([sys.executable, "-m", "mvx", "bench", *args], capture_output=True, text=True, cwd=ROOT,
                           timeout=60, check=False)
        assert r.returncode == 2, (args, r.stderr)
        assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_profile_buckets_are_read_from_py_spy_stacks():
    """Sans-IO: py-spy's raw lines become stacks; the innermost bucketed frame names the bucket;
    only the monitor thread (Monitor.run) is split."""
    from mvx.bench import profile as bp

    raw = ("Thread.run (threading.py:982);Monitor.run (mvx/runtime/monitor.py:209);LeaderMonitor.on_call (mvx/runtime/monitor.py:490);"
           "LeaderLink.check (mvx/runtime/monitor.py:414);Condition.wait (threading.py:331) 7\n"
           "Thread.run (threading.py:982);Monitor.run (mvx/runtime/monitor.py:209);Variant.wait (mvx/mechanics/engine.py:250) 2\n"
           "Thread.run (threading.py:982);Monitor.run (mvx/runtime/monitor.py:209);Monitor.on_call (mvx/runtime/monitor.py:1) 1\n"
           "Thread.run (threading.py:982);LeaderSession._read_loop (mvx/runtime/session.py:1);Pipe._recv_raw (mvx/runtime/pipe.py:9) 5\n")
    stacks = bp.parse_raw(raw)
    assert stacks[1] == (["Thread.run", "Monitor.run", "Variant.wait"], 2)
    total, buckets = bp.monitor_thread_buckets(stacks)
    assert total == 10
    assert buckets == {"waiting for the follower's check (lockstep)": 7,
                       "in the C loop: hot calls carried, and its waits for the variant and the peer": 2, bp.OTHER: 1}


def test_profile_of_lighttpd_under_mvx(tmp_path):
    """The profile run itself: both monitors sampled, numbers produced and sane."""
    from mvx.bench import profile as bp

    servers.get("lighttpd").check(["x86_64", "i386"])
    prof = bp.profile_lighttpd(tmp_path, bench.free_port(), 2, None, quiet)
    assert prof["requests_per_s"] > 0 and prof["synced_calls_per_request"] > 1
    assert prof["divergences"] == 0
    assert set(prof["monitors"]) == {"leader", "follower"}
    for role, mon in prof["monitors"].items():
        assert mon["samples"] > 0, role
        assert abs(sum(b["share"] for b in mon["buckets"]) - 1) < 1e-6, role
        assert mon["wall_us_per_call"] > 0
    for name in ("leader", "follower"):
        # (user and system time: /proc counts in 10 ms ticks, and a monitor's user time in a short
        # window on a loaded machine can round to none)
        cpu, thread = prof["cpu"][name], prof["threads"][f"{name} monitor thread"]
        assert cpu["user_us_per_call"] + cpu["sys_us_per_call"] > 0
        assert thread["user_us_per_call"] + thread["sys_us_per_call"] > 0
    carried, synced = prof["carried_in_c"]["leader"]  # MVX_FAST_STATS: the C loop carries the hot calls
    assert synced > 0 and carried / synced > 0.5
    assert "Where the time goes" in "\n".join(bp.markdown(prof))
