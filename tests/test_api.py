"""mvx as a library (mvx.api) and its pytest plugin (mvx.testing), used the way a project's own
tests would use them: pytest-trio, real variants of two ISAs, real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import trio
from _variants import ROOT, free_port, variant_bin

import mvx
from mvx.testing import assert_no_divergence

DIVERGENCE_EXIT = 70


async def ask(port: int, data: bytes) -> bytes:
    """One request on a connection of its own; the first reply."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        return await stream.receive_some(4096)


def leftovers(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False).stdout
    return [ln for ln in out.splitlines() if "pgrep" not in ln]


def server(arch: str, port: int) -> list[str]:
    return [variant_bin(arch, "epoll_server"), str(port)]


async def test_a_clean_run_serves_and_stops_with_the_programs_status(mvx_run):
    port = free_port()
    run = await mvx_run(server("x86_64", port), [server("i386", port)])
    await run.wait_port(port)
    for _ in range(3):
        assert await ask(port, b"hello\n") == b"Hi, how are you.\n"
    outcome = await run.stop()  # SIGTERM: the server leaves its loop in every variant, exit 0
    assert outcome == mvx.Outcome(exit_code=0, status=0, signal=None, divergence=None)
    assert_no_divergence(run)
    kinds = [e.kind async for e in run.events()]
    assert kinds[0] == "start" and kinds[-1] == "end", kinds
    assert not leftovers(f"epoll_server {port}")


@pytest.mark.parametrize(("leader", "follower"), [("x86_64", "i386"), ("i386", "x86_64")])
async def test_a_divergence_is_reported_with_its_fields(leader, follower, mvx_run):
    run = await mvx_run(variant_bin(leader, "diverge"), variant_bin(follower, "diverge"), args=["bytes"],
                        stdin=b"hi\n", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3)
    outcome = await run.wait()
    assert outcome.exit_code == DIVERGENCE_EXIT
    d = outcome.divergence
    assert d is not None and run.divergences == [d]
    assert (d.kind, d.argument, d.byte) == ("arguments", "buf", 1), d
    assert '"got: hi\\n"' in (d.leader if leader == "x86_64" else d.follower)
    assert '"gOt: hi\\n"' in (d.follower if leader == "x86_64" else d.leader)
    assert d.where in ("leader", "follower 0")
    with pytest.raises(AssertionError, match=r"DIVERGENCE \(arguments\) at synced call #\d+"):
        assert_no_divergence(run)


async def test_leaving_the_block_on_cancellation_leaves_no_process():
    port = free_port()
    with trio.move_on_after(60) as scope:  # a bound, never reached: the body cancels itself
        async with mvx.open_run(server("x86_64", port), [server("i386", port)]) as run:
            await run.wait_port(port)
            assert await ask(port, b"x\n") == b"Hi, how are you.\n"
            pids = [m.proc.pid for m in run._monitors]
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert not leftovers(f"epoll_server {port}")
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)
    assert run.outcome is not None and run.outcome.divergence is None


async def test_an_exception_in_the_body_stops_every_variant_and_propagates():
    port = free_port()
    with pytest.raises(KeyError):
        async with mvx.open_run(server("x86_64", port), [server("i386", port)]) as run:
            await run.wait_port(port)
            raise KeyError("the test's own failure")
    assert not leftovers(f"epoll_server {port}")


async def test_two_followers(mvx_run):
    port = free_port()
    run = await mvx_run(server("x86_64", port), [server("i386", port), f"{variant_bin('x86_64', 'epoll_server')} {port}"])
    await run.wait_port(port)
    assert await ask(port, b"one\n") == b"Hi, how are you.\n"
    outcome = await run.stop()
    assert outcome.exit_code == 0 and not run.divergences
    starts = [e.data async for e in run.events() if e.kind == "start"]
    assert starts[0]["followers"] == 2


async def test_a_missing_binary_is_a_variant_error():
    with pytest.raises(mvx.VariantError, match="the leader: /nonexistent: no such file"):
        async with mvx.open_run("/nonexistent", variant_bin("i386", "epoll_server")):
            pass
    with pytest.raises(mvx.VariantError, match="No closing quotation"):
        async with mvx.open_run(variant_bin("x86_64", "epoll_server") + " 'x", variant_bin("i386", "epoll_server")):
            pass
    with pytest.raises(mvx.VariantError, match=r"follower 1: 5000: command not found \(followers is a list of"):
        async with mvx.open_run(variant_bin("x86_64", "epoll_server"), [variant_bin("i386", "epoll_server"), "5000"]):
            pass


async def test_a_port_that_never_opens_is_a_port_timeout(mvx_run):
    port, other = free_port(), free_port()
    run = await mvx_run(server("x86_64", port), [server("i386", port)])
    with pytest.raises(mvx.PortTimeout, match=f"nothing listened on port {other} within 1s"):
        await run.wait_port(other, timeout=1)
    await run.wait_port(port)


async def test_a_run_that_ends_before_its_port_opens_says_why(mvx_run):
    run = await mvx_run(variant_bin("x86_64", "diverge"), variant_bin("i386", "diverge"), args=["exit"],
                        stdin=b"hi\n", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3)
    with pytest.raises(mvx.PortTimeout, match=r"the run ended before port \d+ opened \(divergence"):
        await run.wait_port(free_port(), timeout=30)


# ---- the pytest plugin, as another project uses it ----------------------------------------------------


def pytest_in(tmp_path, test_text: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    (tmp_path / "test_user.py").write_text(textwrap.dedent(test_text))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_fixture_stops_the_runs_of_a_failing_test(tmp_path):
    port = free_port()
    r = pytest_in(tmp_path, f"""
        async def test_fails(mvx_run):
            run = await mvx_run(["{variant_bin('x86_64', 'epoll_server')}", "{port}"],
                                ["{variant_bin('i386', 'epoll_server')} {port}"])
            await run.wait_port({port})
            assert False, "the test's own failure"
    """)
    assert "1 failed" in r.stdout, r.stdout + r.stderr
    assert "the test's own failure" in r.stdout
    assert not leftovers(f"epoll_server {port}")


def test_mvx_mode_runs_a_test_under_each_mode(tmp_path):
    r = pytest_in(tmp_path, f"""
        import mvx
        from mvx.testing import assert_no_divergence

        async def test_serves(mvx_run, mvx_mode):
            run = await mvx_run("{variant_bin('x86_64', 'diverge')} same", "{variant_bin('i386', 'diverge')} same",
                                stdin=b"hi\\n")
            outcome = await run.wait()
            assert outcome.exit_code == 0
            assert_no_divergence(run)
            start = [e.data async for e in run.events() if e.kind == "start"][0]
            assert start["mode"] == mvx_mode
    """, "--mvx-mode", "all", "-vv")
    assert r.returncode == 0, r.stdout + r.stderr
    for mode in ("hybrid", "seccomp", "ptrace"):
        assert f"test_serves[{mode}] PASSED" in r.stdout


def test_a_bad_mvx_mode_is_a_usage_error(tmp_path):
    r = pytest_in(tmp_path, "def test_nothing(mvx_run):\n    pass\n", "--mvx-mode", "fast")
    assert r.returncode == 4  # pytest's usage error
    assert "--mvx-mode 'fast': modes are hybrid, seccomp, ptrace or all" in r.stderr


async def test_the_two_node_form_over_loopback():
    """open_leader + open_follower (mvx leader / mvx follower over TCP, insecure on loopback): a
    clean run, then the follower's divergence seen by both sides."""
    port, link = free_port(), free_port()
    async with mvx.open_follower(server("i386", port), connect=f"127.0.0.1:{link}", insecure=True) as follower, \
            mvx.open_leader(server("x86_64", port), listen=f"127.0.0.1:{link}", insecure=True) as leader:
        await leader.wait_port(port)
        assert await ask(port, b"x\n") == b"Hi, how are you.\n"
        assert (await leader.stop()).exit_code == 0
        assert (await follower.wait()).exit_code == 0
    assert not leader.divergences and not follower.divergences

    link = free_port()
    async with mvx.open_follower([variant_bin("i386", "diverge"), "bytes"], connect=f"127.0.0.1:{link}",
                                 insecure=True) as follower, \
            mvx.open_leader([variant_bin("x86_64", "diverge"), "bytes"], listen=f"127.0.0.1:{link}", insecure=True,
                            stdin=b"hi\n", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3) as leader:
        assert (await leader.wait()).exit_code == DIVERGENCE_EXIT
        assert (await follower.wait()).exit_code == DIVERGENCE_EXIT
    assert leader.divergences[0].where == "follower 0" and follower.divergences[0].where == "follower"
    assert leader.divergences[0].seq == follower.divergences[0].seq


async def test_a_node_without_keys_or_insecure_is_refused():
    with pytest.raises(mvx.MvxError, match=r"keys= \(from `mvx keygen`\) or insecure=True"):
        async with mvx.open_leader(server("x86_64", 5000), listen="127.0.0.1:1"):
            pass


async def test_records_true_shows_every_synced_call_as_an_event():
    async with mvx.open_run(variant_bin("x86_64", "diverge") + " same", variant_bin("i386", "diverge") + " same",
                            stdin=b"hi\n", stdout=subprocess.DEVNULL, records=True) as run:
        outcome = await run.wait()
    assert outcome.exit_code == 0 and not run.divergences
    events = [e async for e in run.events()]
    records = [e.data for e in events if e.kind == "record"]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert any(r["call"].startswith('write(1, "got: hi\\n", 8)') for r in records), records
    start = next(e.data for e in events if e.kind == "start")
    assert start["followers"] == 2  # the follower, and the stand-in that watches
    end = next(e.data for e in events if e.kind == "end")
    assert end["synced_calls"] == len(records)


async def test_the_two_node_form_over_tls(tmp_path):
    """open_leader/open_follower with the keys of `mvx keygen` (mutual TLS)."""
    keys = tmp_path / "keys"
    await trio.run_process([sys.executable, "-m", "mvx", "keygen", str(keys)], capture_stdout=True,
                           capture_stderr=True, cwd=ROOT)
    port, link = free_port(), free_port()
    async with mvx.open_leader(server("x86_64", port), listen=f"127.0.0.1:{link}", keys=keys) as leader, \
            mvx.open_follower(server("i386", port), connect=f"127.0.0.1:{link}", keys=keys) as follower:
        await leader.wait_port(port)
        assert await ask(port, b"x\n") == b"Hi, how are you.\n"
        assert (await leader.stop()).exit_code == 0
        assert (await follower.wait()).exit_code == 0


def test_the_mvx_modes_marker_picks_a_tests_modes(tmp_path):
    r = pytest_in(tmp_path, f"""
        import pytest

        @pytest.mark.mvx_modes("ptrace", "seccomp")
        async def test_marked(mvx_run, mvx_mode):
            run = await mvx_run("{variant_bin('x86_64', 'diverge')} same", "{variant_bin('i386', 'diverge')} same",
                                stdin=b"hi\\n")
            assert (await run.wait()).exit_code == 0
            start = [e.data async for e in run.events() if e.kind == "start"][0]
            assert start["mode"] == mvx_mode

        def test_unmarked(mvx_mode):
            assert mvx_mode == "hybrid"
    """, "-vv")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test_marked[ptrace] PASSED" in r.stdout and "test_marked[seccomp] PASSED" in r.stdout
    assert "test_unmarked[hybrid] PASSED" in r.stdout and "3 passed" in r.stdout
