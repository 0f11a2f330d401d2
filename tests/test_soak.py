"""The soak's own machinery (mvx.bench.soak; `just soak` runs it with a million requests): a short
one serves, checks, samples the monitors' memory and writes its report."""

from __future__ import annotations

import json
import subprocess
import sys

from _variants import ROOT


def test_a_short_soak_serves_and_reports(tmp_path):
    out = tmp_path / "soak"
    r = subprocess.run([sys.executable, "-m", "mvx.bench.soak", "--requests", "1500", "--round", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert r.returncode == 0, r.stderr
    data = json.loads((out.with_suffix(".json")).read_text())
    assert data["total"] >= 1500 and data["bad"] == data["errors"] == data["divergences"] == 0
    assert data["alive_to_the_end"] and data["exit_status"] == 0
    assert all(s["leader"] and s["follower"] for s in data["rss_kib"])  # both monitors found and sampled
    md = out.with_suffix(".md").read_text()
    assert f"| requests served (checked) | {data['total']:,} | 1,500 |" in md
    assert "| leader monitor RSS: start / end / peak |" in md
