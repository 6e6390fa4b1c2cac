"""bench/paper_replay.py runs end to end on a short replay and reports its figures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_paper_replay_bench_reports_speed_latency_memory_and_parity(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "paper_replay.py"), "--bars", "4000",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["bars"] == 4000 and r["equity_points"] == 4000 and r["fills"] > 10
    assert r["same_trades_as_backtest"] is True
    assert 0 < r["latency_us"]["p50"] <= r["latency_us"]["p99"] <= r["latency_us"]["max"]
    assert set(r["rss_mb"]) == {"before", "10%", "50%", "100%"} and r["bars_per_s_loop"] > 0
    assert "bars/s" in proc.stdout and "p99" in proc.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "paper_replay.py"), "--bars", "5"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--bars must be at least 100 (got 5)" in bad.stderr
