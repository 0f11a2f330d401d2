"""The --log JSON lines follow the schema (LOG_EVENTS, docs/LOG.md) in real runs, and the document
names every field of it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from _variants import ROOT, free_port, variant_bin

from mvx.runtime.session import LOG_COMMON, LOG_EVENTS, log_problems


def run(log, *args: str, stdin: bytes = b"hi\n") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvx", "run", "--log", str(log), "--timeout", "3", *args],
                          input=stdin, capture_output=True, timeout=60, cwd=ROOT, check=False)


def lines(log) -> list[dict]:
    return [json.loads(ln) for ln in log.read_text().splitlines()]


@pytest.mark.parametrize(("leader", "follower", "mode", "events"), [
    ("x86_64", "i386", "same", ["start", "end"]),
    ("x86_64", "i386", "bytes", ["start", "divergence", "end"]),  # caught by the follower
    ("i386", "x86_64", "bytes", ["start", "divergence", "end"]),  # by the leader
    ("x86_64", "i386", "hang", ["start", "divergence", "end"]),  # a timeout
])
def test_every_line_of_a_run_follows_the_schema(tmp_path, leader, follower, mode, events):
    log = tmp_path / "log.jsonl"
    r = run(log, "--leader", variant_bin(leader, "diverge"), "--follower", variant_bin(follower, "diverge"), "--", mode)
    assert r.returncode in (0, 70), r.stderr
    entries = lines(log)
    assert [e["event"] for e in entries] == events
    for e in entries:
        assert log_problems(e) == [], e
    if "divergence" in events:
        d = next(e for e in entries if e["event"] == "divergence")
        assert d["forensics"] and all(isinstance(v, dict) for v in d["forensics"].values())


def test_the_schema_rejects_what_it_does_not_describe():
    good = {"time": 1.5, "role": "leader", "event": "end", "status": 0, "signal": None, "stopped": None,
            "divergences": 0, "synced_calls": 3}
    assert log_problems(good) == []
    assert log_problems({**good, "status": "0"}) == ["end.status: '0' is not (<class 'int'>, None)"]
    assert log_problems({**good, "divergences": True})  # a bool is not a count
    assert log_problems({k: v for k, v in good.items() if k != "synced_calls"}) == ["end: no synced_calls"]
    assert log_problems({**good, "extra": 1}) == ["end: fields not in the schema: ['extra']"]
    assert log_problems({**good, "event": "party"}) == ["unknown event 'party'"]


def test_the_document_names_every_field_of_the_schema():
    doc = (ROOT / "docs" / "LOG.md").read_text()
    rows = set(re.findall(r"^\| ([\w*-]+) \| (\w+) \| [^|]+ \| [^|]+ \|$", doc, re.MULTILINE))
    rows.discard(("event", "field"))
    schema = {("*", f) for f in LOG_COMMON} | {(ev, f) for ev, fields in LOG_EVENTS.items() for f in fields}
    assert rows == schema


async def test_the_api_events_are_the_log_lines(tmp_path):
    """Run.events() carries the same lines as --log (the leader's --events-fd)."""
    import mvx

    port = free_port()
    log = tmp_path / "log.jsonl"
    async with mvx.open_run([variant_bin("x86_64", "epoll_server"), str(port)],
                            [[variant_bin("i386", "epoll_server"), str(port)]], log=log) as run:
        await run.wait_port(port)
        await run.stop()
    seen = [e.data async for e in run.events()]
    assert seen == lines(log)
    assert [e["event"] for e in seen] == ["start", "end"]
