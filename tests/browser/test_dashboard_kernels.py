"""Kernel culling in a real browser: a dashboard tab's kernel lives while the tab is open (even past the
cull interval, though its refresh ticker never stops talking) and is shut down soon after the tab is
gone, also when the tab never said goodbye (closed without ``beforeunload``, as a killed tab)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .conftest import Served, start_up, stop_up
from .test_dashboards import ARGS, CHROMIUM, LOAD

CULL_AFTER = 3  # s; Jupyter Server checks every second at this setting

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                                 "/usr/bin/chromium (apt-get install chromium; .ci/run does it)")]


def kernels(up: Served) -> set[int]:
    """Pids of the Voilà kernels of ``workbench up``."""
    out = set()
    for p in psutil.Process(up.proc.pid).children(recursive=True):
        try:
            if "ipykernel" in " ".join(p.cmdline()):
                out.add(p.pid)
        except psutil.Error:
            pass
    return out


def poll(predicate, timeout: float, step: float = 0.25) -> bool:
    """Whether ``predicate()`` holds within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_up(tmp_path_factory.mktemp("wbhome"), "--no-seed", "--no-host", "--preheat", "0",
                      "--cull-after", str(CULL_AFTER))
    try:
        yield served
    finally:
        stop_up(served)


def test_closed_tabs_leave_no_kernels_and_an_open_one_is_kept(up: Served) -> None:
    from playwright.sync_api import sync_playwright

    assert kernels(up) == set()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            kept = browser.new_context()
            page = kept.new_page()
            page.goto(up.url("sessions"), timeout=LOAD)
            page.wait_for_selector(".wb-sessions-table", timeout=LOAD)
            mine = kernels(up)
            assert len(mine) == 1
            (pid,) = mine  # a light kernel (workbench.dashboard_kernels.KERNEL_SETUP): pandas without pyarrow
            assert not [m for m in Path(f"/proc/{pid}/maps").read_text().splitlines() if "libarrow" in m]
            killed: set[int] = set()
            for name in ("risk", "history"):  # tabs killed without a word
                ctx = browser.new_context()
                tab = ctx.new_page()
                tab.goto(up.url(name), timeout=LOAD)
                tab.wait_for_selector(".wb-page", timeout=LOAD)
                killed |= kernels(up) - mine - killed  # its kernel (an earlier tab's may be culled already)
                ctx.close()  # no beforeunload: Voilà is not told
            assert len(killed) == 2 and mine <= kernels(up)
            # the closed tabs' kernels go within the cull time (+ the check interval and a shutdown)
            assert poll(lambda: kernels(up) == mine, CULL_AFTER + 20), f"left: {kernels(up) - mine}"
            time.sleep(CULL_AFTER + 2)  # past the cull time: the open tab's kernel is kept ...
            assert kernels(up) == mine
            page.locator(".wb-page").first.wait_for(timeout=5_000)
            assert not page.locator("text=Connection lost").count()  # ... and still talks to its page
            kept.close()
            assert poll(lambda: not kernels(up), CULL_AFTER + 20), f"left: {kernels(up)}"
        finally:
            browser.close()


def test_the_cull_rule_counts_only_idle_time_with_no_tab() -> None:
    """:meth:`TabKernelManager.unattended`: a connected or busy kernel is attended (and its count restarts);
    an idle one with no connection is alone since the first check that saw it so."""
    from types import SimpleNamespace

    from workbench.dashboard_kernels import TabKernelManager

    now = [100.0]
    km = TabKernelManager()
    km.clock = lambda: now[0]
    kernel = SimpleNamespace(execution_state="idle")
    km._kernels["k"] = kernel
    km._kernel_connections["k"] = 1
    assert km.unattended("k") == 0.0
    km._kernel_connections["k"] = 0  # the tab is gone
    assert km.unattended("k") == 0.0
    now[0] += 5
    assert km.unattended("k") == 5.0
    kernel.execution_state = "busy"  # running a cell (a page being built): never culled
    assert km.unattended("k") == 0.0
    kernel.execution_state = "idle"
    now[0] += 2
    assert km.unattended("k") == 0.0  # counting starts again
    now[0] += 1
    assert km.unattended("k") == 1.0


def test_cull_and_preheat_reach_voila_and_bad_values_are_clear_errors(tmp_path) -> None:
    from workbench.serve import dashboards_dir, serve, voila_command

    cmd = voila_command(dashboards_dir(), 8123, cull_after=2.5, preheat=2)
    assert "--VoilaConfiguration.multi_kernel_manager_class=workbench.dashboard_kernels.TabKernelManager" in cmd
    assert "--MappingKernelManager.cull_idle_timeout=3" in cmd and "--MappingKernelManager.cull_interval=1" in cmd
    assert "--VoilaConfiguration.preheat_kernel=True" in cmd and "--VoilaConfiguration.default_pool_size=2" in cmd
    plain = voila_command(dashboards_dir(), 8123, cull_after=None, preheat=0)
    assert not any("cull" in a or "preheat" in a or "TabKernelManager" in a for a in plain)
    # no culling, but still the manager that starts kernels without secrets (test_serve_security.py)
    assert "--VoilaConfiguration.multi_kernel_manager_class=workbench.dashboard_kernels.DashboardKernelManager" in plain
    with pytest.raises(ValueError, match="--cull-after must be a positive number of seconds"):
        serve(home=tmp_path, cull_after=0)
    with pytest.raises(ValueError, match="--preheat must be 0"):
        serve(home=tmp_path, preheat=-1)
