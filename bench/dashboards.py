"""The dashboards in a real browser: time to the first widget per page, kernel memory, and kernels left
after tabs are closed.

Starts ``workbench up`` (demo backtest + demo paper session on a fresh temporary store) from a source
tree, opens every page (the session detail page with ``?id=`` of the demo paper session) in Debian's
headless chromium (Playwright), and prints per page the seconds from navigation to the first rendered
widget (``.wb-page``), the RSS and USS of every Voilà kernel (children of ``workbench up``), then opens and
closes ``--tabs`` tabs (closed without ``beforeunload``, as a killed tab or a crashed browser leaves them)
and polls until the kernel count is back to what it was before any tab was opened (the pre-heated pool).

``--before REF`` runs the same measurements on the tree of git commit REF first (``git archive``, served
with ``PYTHONPATH`` pointing at it; its ``workbench up`` gets no tuning flags) and prints the ratios::

    .venv/bin/python bench/dashboards.py                      # this tree, ~1-2 minutes
    .venv/bin/python bench/dashboards.py --before e5901c6 --json out.json
    .venv/bin/python bench/dashboards.py --before e5901c6 --after HEAD   # committed trees only
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from workbench.serve import page_url, url_token  # the URL `up` prints carries its token

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
        "--disable-component-update", "--disable-sync"]
PAGES = ("sessions", "session", "risk", "history")
FIRST_WIDGET = ".wb-page"  # every page's outer widget (workbench.ui.pages.Page)
TARGETS = {"first_widget_s": 2.0, "kernel_rss_mb": 150.0}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TREES = Path(tempfile.gettempdir()) / "wb-bench-trees"  # one per commit, kept: numba's cache is per source path


def prepare(ref: str) -> Path:
    """The files of commit ``ref`` (``git archive``: the repository is not touched) with numba's cache filled
    for them, as installation does once; kept under :data:`TREES` for the next run (filling it takes minutes
    on a busy machine)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"], check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = TREES / sha
    if (tree / ".warm").exists():
        return tree
    TREES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=TREES) as where:
        tar = Path(where) / "tree.tar"
        subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(tar), sha], check=True)
        with tarfile.open(tar) as t:
            t.extractall(Path(where) / "tree", filter="data")
        shutil.rmtree(tree, ignore_errors=True)  # a run killed while filling the cache
        (Path(where) / "tree").rename(tree)
    progress(f"{ref}: exported to {tree}; filling numba's cache (workbench warmup)")
    subprocess.run([sys.executable, "-m", "workbench.cli", "warmup"], cwd=tree, check=True,
                   env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True)
    (tree / ".warm").touch()
    return tree


class Up:
    """``workbench up`` of the tree ``source`` on a free port and a fresh home."""

    def __init__(self, source: Path, home: Path, flags: list[str]):
        self.port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(source)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", "up", "--home", str(home), "--port", str(self.port),
             "--dashboards", str(source / "dashboards"), "--replay-speed", "60", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(source))
        self.lines: list[str] = []
        ready: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                ready.put(line)
            ready.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while (line := ready.get(timeout=300)) is not None and "dashboards at http" not in line:
            pass
        if line is None:
            raise RuntimeError("workbench up exited:\n" + "".join(self.lines))
        found = re.search(r"demo paper session (\w+)", "".join(self.lines))
        self.demo = found.group(1) if found else ""
        self.token = url_token(line)  # None for a tree from before `up` had one

    def url(self, page: str) -> str:
        return page_url(self.port, page, f"id={self.demo}" if page == "session" else "", token=self.token)

    def kernels(self) -> list[psutil.Process]:
        out = []
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if "ipykernel" in " ".join(p.cmdline()):
                    out.append(p)
            except psutil.Error:
                pass
        return out

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def settle(up: Up, timeout: float = 120.0, quiet: float = 4.0) -> int:
    """Wait until the kernel count has not changed for ``quiet`` s (the pre-heated pool is full); the count."""
    deadline, count, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = len(up.kernels())
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet and all(_cpu_idle(k) for k in up.kernels()):
            return count
        time.sleep(0.5)
    return count


def _cpu_idle(p: psutil.Process) -> bool:
    try:
        return p.cpu_percent(interval=0.2) < 20.0
    except psutil.Error:
        return True


def open_page(browser: Any, up: Up, page: str, timeout_ms: int = 600_000) -> tuple[Any, float]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = ctx.new_page()
    ctx.kernel_urls = []  # the page's websockets: its kernel's id is in the channels URL
    tab.on("websocket", lambda ws: ctx.kernel_urls.append(ws.url))
    t0 = time.perf_counter()
    tab.goto(up.url(page), timeout=timeout_ms)
    tab.wait_for_selector(FIRST_WIDGET, timeout=timeout_ms)
    return ctx, time.perf_counter() - t0


def kernel_rss(up: Up, ctx: Any) -> int | None:
    """RSS in MB of the kernel of the page open in ``ctx`` (None if not found)."""
    ids = [m.group(1) for u in ctx.kernel_urls if (m := re.search(r"/api/kernels/([\w-]+)/channels", u))]
    for k in up.kernels():
        try:
            if ids and ids[0] in " ".join(k.cmdline()):
                return round(k.memory_info().rss / 2**20)
        except psutil.Error:
            pass
    return None


def progress(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def measure(source: Path, flags: list[str], tabs: int, cull_wait: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="wb-bench-home-") as home:
        up = Up(source, Path(home), flags)
        try:
            progress(f"workbench up of {source} ready; {settle(up)} kernels")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                for page in PAGES:  # warm: numba's cache for a new tree, the OS's file cache
                    ctx, _ = open_page(browser, up, page)
                    ctx.pages[0].close(run_before_unload=True)  # the page asks Voilà to end its kernel
                    ctx.close()
                baseline = settle(up)
                progress(f"warm: every page opened once; {baseline} kernels")
                first: dict[str, float] = {}
                open_ctx = []
                for page in PAGES:
                    ctx, seconds = open_page(browser, up, page)
                    first[page] = seconds
                    progress(f"{page}: first widget {seconds:.2f} s")
                    open_ctx.append(ctx)
                    settle(up, quiet=2.0)  # the pool's refill must not slow the next page
                time.sleep(2.0)  # the pages' first refreshes
                per_page = {page: kernel_rss(up, ctx) for page, ctx in zip(PAGES, open_ctx)}
                mem = []
                for k in up.kernels():
                    try:
                        info = k.memory_full_info()
                        mem.append((info.rss / 2**20, info.uss / 2**20))
                    except psutil.Error:
                        pass
                for ctx in open_ctx:
                    ctx.close()
                t_tabs = time.monotonic()
                for i in range(tabs):
                    ctx, _ = open_page(browser, up, PAGES[i % len(PAGES)])
                    ctx.close()  # no beforeunload: as a killed tab
                tabs_s = time.monotonic() - t_tabs
                progress(f"{tabs} tabs opened and closed in {tabs_s:.1f} s")
                browser.close()
            t0, left = time.monotonic(), len(up.kernels())
            while time.monotonic() - t0 < cull_wait and left > baseline:
                time.sleep(0.5)
                left = len(up.kernels())
        finally:
            up.stop()
    return {"first_widget_s": first, "page_kernel_rss_mb": per_page, "kernels_rss_mb": [round(r) for r, _ in mem],
            "kernels_uss_mb": [round(u) for _, u in mem], "pool_kernels": baseline, "tabs": tabs,
            "tabs_s": round(tabs_s, 1), "kernels_left": left - baseline,
            "cull_s": round(time.monotonic() - t0, 1) if left <= baseline else None}


def report(name: str, r: dict[str, Any]) -> None:
    print(f"\n== {name}")
    for page, s in r["first_widget_s"].items():
        ok = "ok" if s < TARGETS["first_widget_s"] else "OVER"
        print(f"  first widget {page:<9} {s:6.2f} s  (target < {TARGETS['first_widget_s']:g} s: {ok})")
    print("  kernel RSS MB per open page: " + ", ".join(f"{p} {v}" for p, v in r.get("page_kernel_rss_mb", {}).items()))
    rss, uss = r["kernels_rss_mb"], r["kernels_uss_mb"]
    if rss:
        ok = "ok" if max(rss) < TARGETS["kernel_rss_mb"] else "OVER"
        print(f"  kernel RSS MB   max {max(rss)}, median {statistics.median(rss):.0f} over {len(rss)} kernels "
              f"(target < {TARGETS['kernel_rss_mb']:g}: {ok}); USS max {max(uss)}, median {statistics.median(uss):.0f}")
    gone = f"all culled after {r['cull_s']:.1f} s" if r["cull_s"] is not None else f"{r['kernels_left']} LEFT"
    print(f"  {r['tabs']} tabs opened and closed in {r['tabs_s']} s; kernels before them {r['pool_kernels']} "
          f"(pre-heated pool, warm-up leftovers); kernels beyond those: {gone}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tabs", type=int, default=20, help="tabs opened and closed (default 20)")
    ap.add_argument("--cull-after", type=float, default=10.0, help="this tree's --cull-after (default 10 s)")
    ap.add_argument("--preheat", type=int, default=1, help="this tree's --preheat (default 1)")
    ap.add_argument("--before", metavar="REF", help="also measure the tree of git commit REF (no tuning flags)")
    ap.add_argument("--before-tabs", type=int, default=None, help="tabs for REF (default --tabs)")
    ap.add_argument("--after", metavar="REF", help="measure the tree of git commit REF (with the tuning flags) "
                    "instead of the working tree (which others may be editing)")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    wait = args.cull_after * 2 + 30
    if args.before:
        results["before"] = measure(prepare(args.before), [], args.before_tabs or args.tabs, wait)
        report(f"before ({args.before})", results["before"])
    flags = ["--cull-after", str(args.cull_after), "--preheat", str(args.preheat)]
    results["after"] = measure(prepare(args.after) if args.after else ROOT, flags, args.tabs, wait)
    report(f"this tree{f' ({args.after})' if args.after else ''}", results["after"])
    if "before" in results:
        b, a = results["before"], results["after"]
        print("\n== ratios (before / after)")
        for page in PAGES:
            print(f"  first widget {page:<9} {b['first_widget_s'][page] / a['first_widget_s'][page]:6.1f}x")
        print(f"  max kernel RSS      {max(b['kernels_rss_mb']) / max(a['kernels_rss_mb']):6.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
