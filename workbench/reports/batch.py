"""Many reports from one YAML file, run in parallel processes, with an index page linking each.

The YAML file::

    base:                       # parameters every run shares (see run.PARAMETERS)
      strategy: momentum
      symbols: [BTC/USDT]
      start: 2024-01-01
      end: 2024-01-08
    grid:                       # cartesian product of these lists ...
      fee: [0.001, 0.002]
      params:                   # ... strategy parameters too (or write "params.window: [30, 60]")
        window: [30, 60]
    runs:                       # ... and/or explicit runs, each over base; "name" names the files
      - {name: tight-stop, stop_loss: 0.01}
"""
from __future__ import annotations

import html
import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from workbench.metrics import format_metric
from workbench.reports.run import ReportError, notebook_parameters, run_report, slug

INDEX_METRICS: tuple[tuple[str, str], ...] = (
    ("total_return", "Total return"), ("sharpe_ratio", "Sharpe"), ("max_drawdown", "Max drawdown"),
    ("trade_count", "Trades"),
)


class BatchError(ValueError):
    """The batch file cannot be used as written."""


def _dotted(d: dict[str, Any]) -> dict[str, Any]:
    """``{"params": {"window": [..]}}`` -> ``{"params.window": [..]}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == "params" and isinstance(v, dict):
            out.update({f"params.{pk}": pv for pk, pv in v.items()})
        else:
            out[str(k)] = v
    return out


def _apply(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` changed by ``changes``; strategy params merge, unless the strategy itself changes."""
    other = "strategy" in changes and changes["strategy"] != base.get("strategy")
    out = {**base, "params": {} if other else dict(base.get("params") or {})}
    for k, v in _dotted(changes).items():
        if k.startswith("params."):
            out["params"][k.removeprefix("params.")] = v
        else:
            out[k] = v
    if not out["params"] and "params" not in base and "params" not in changes:
        del out["params"]
    return out


def _label(changes: dict[str, Any]) -> str:
    return ",".join(f"{k.removeprefix('params.')}={v}" for k, v in _dotted(changes).items()) or "base"


def load_batch(path: str | Path, db_url: str | None = None) -> list[tuple[str, dict[str, Any], str]]:
    """``(name, parameters, label)`` of every run the file describes, parameters checked; ``db_url``
    is the store for runs that do not name one."""
    import yaml

    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise BatchError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(spec, dict) or not ({"grid", "runs"} & set(spec)):
        raise BatchError(f"{path}: needs a 'grid' mapping of parameter lists and/or a 'runs' list "
                         "(and an optional 'base')")
    unknown = sorted(set(spec) - {"base", "grid", "runs"})
    if unknown:
        raise BatchError(f"{path}: unknown section(s) {', '.join(unknown)}; use base, grid and runs")
    base = spec.get("base") or {}
    if db_url is not None and isinstance(base, dict):
        base = {"db_url": db_url, **base}
    grid = _dotted(spec.get("grid") or {})
    runs = spec.get("runs") or []
    if not isinstance(base, dict) or not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise BatchError(f"{path}: 'base' must be a mapping and 'runs' a list of mappings")
    out: list[tuple[str, dict[str, Any], str]] = []
    if grid:
        keys = list(grid)
        lists = [v if isinstance(v, list) else [v] for v in grid.values()]
        for combo in itertools.product(*lists):
            changes = dict(zip(keys, combo))
            out.append(("", _apply(base, changes), _label(changes)))
    for run in runs:
        run = dict(run)
        name = str(run.pop("name", "") or "")
        out.append((name, _apply(base, run), _label(run)))
    named: list[tuple[str, dict[str, Any], str]] = []
    seen: set[str] = set()
    for i, (name, params, label) in enumerate(out, 1):
        try:
            notebook_parameters(params)
        except ReportError as e:
            raise BatchError(f"{path}: run {i} ({label}): {e}") from None
        n = slug(name or f"{i:02d}-" + label.replace("=", "-").replace(",", "_"))
        while n in seen:
            n += "_"
        seen.add(n)
        named.append((n, params, label))
    return named


def _one(name: str, params: dict[str, Any], out_dir: str, timeout: float) -> dict[str, Any]:
    """Run one report in a worker process; never raises, reports the error instead."""
    try:
        o = run_report(params, out_dir, name=name, timeout=timeout)
        return {"notebook": o.notebook_path, "html": o.html_path, "summary": o.summary, "error": None}
    except ReportError as e:
        out = e.output
        return {"notebook": out and out.notebook_path, "html": out and out.html_path, "summary": None,
                "error": str(e)}
    except Exception as e:  # noqa: BLE001  (one bad run must not sink the batch)
        return {"notebook": None, "html": None, "summary": None, "error": f"{type(e).__name__}: {e}".splitlines()[0]}


def _cell(key: str, summary: dict[str, Any] | None) -> str:
    if not summary:
        return ""
    v = summary.get("metrics", {}).get(key)
    if v is None:
        return "n/a"
    return format_metric(key, float(v))  # "inf"/"-inf" strings read back as floats


def write_index(rows: list[dict[str, Any]], path: Path, title: str = "Backtest reports") -> Path:
    """An HTML page: one row per run with a link to its report, the key metrics, or its error."""
    esc = html.escape
    head = "".join(f"<th>{esc(label)}</th>" for _, label in INDEX_METRICS)
    body = []
    for r in rows:
        target = r["html"] or r["notebook"]
        link = f'<a href="{esc(Path(target).name)}">{esc(r["name"])}</a>' if target else esc(r["name"])
        error = (r["error"] or "").removeprefix("report failed: ")
        status = '<td class="ok">ok</td>' if not error else f'<td class="failed">failed: {esc(error)}</td>'
        metrics = "".join(f"<td>{esc(_cell(k, r['summary']))}</td>" for k, _ in INDEX_METRICS)
        body.append(f"<tr><td>{link}</td><td><code>{esc(r['label'])}</code></td>{metrics}{status}</tr>")
    failed = sum(1 for r in rows if r["error"])
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title><style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, td:nth-child(2) {{ text-align: left; }}
.ok {{ color: #2ca02c; }} .failed {{ color: #d62728; text-align: left; }}
</style></head><body><h1>{esc(title)}</h1>
<p>{len(rows)} runs, {len(rows) - failed} ok, {failed} failed.</p>
<table><thead><tr><th>Report</th><th>Parameters</th>{head}<th>Status</th></tr></thead><tbody>
{chr(10).join(body)}
</tbody></table></body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def run_batch(
    grid_yaml_path: str | Path, out_dir: str | Path, *, workers: int = 2, timeout: float = 600,
    db_url: str | None = None,
) -> Path:
    """Run every report of the batch file in ``workers`` parallel processes into ``out_dir``; returns
    the path of ``out_dir/index.html``, which links each report with its key metrics or its error
    (``index.json`` beside it holds the same rows for programs)."""
    if workers < 1:
        raise BatchError(f"workers must be at least 1 (got {workers})")
    runs = load_batch(grid_yaml_path, db_url)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=min(workers, len(runs))) as pool:
        futures = [pool.submit(_one, name, params, str(out), timeout) for name, params, _ in runs]
        results = [f.result() for f in futures]
    rows = [{"name": name, "label": label, "params": params, **res}
            for (name, params, label), res in zip(runs, results)]
    (out / "index.json").write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    return write_index(rows, out / "index.html", title=f"Backtest reports: {Path(grid_yaml_path).name}")
