"""bench/host_scale.py runs sessions in one host process and reports its table, with the issue's targets."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = str(ROOT / "bench" / "host_scale.py")


def test_host_scale_bench_runs_two_sessions_and_prints_its_table(tmp_path):
    out = tmp_path / "r.json"
    # 3 s: a session's equity rows go to the store with its periodic checkpoint, every 2 s, so a 2 s window
    # could see none of them
    proc = subprocess.run([sys.executable, BENCH, "--sizes", "2", "--seconds", "3", "--baseline-sizes", "",
                           "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (r,) = json.loads(out.read_text())["shared"]
    assert r["n"] == 2 and r["states"] == {"running": 2} and r["orphaned"] == 0
    assert r["bar_to_done_ms"]["n"] >= 2 and 0 < r["bar_to_done_ms"]["p50"] <= r["bar_to_done_ms"]["p99"]
    assert r["pace"] > 0.5 and r["rows_per_s"] > 0 and r["rss_mb"] > r["rss_before_mb"]
    assert r["bar_block_loads"] == 6  # five symbols and their combined block, once for both sessions
    assert "bar->order p50/p99" in proc.stdout and "targets at 200 sessions" in proc.stdout
    bad = subprocess.run([sys.executable, BENCH, "--sizes", "1,x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--sizes takes whole numbers separated by commas" in bad.stderr
