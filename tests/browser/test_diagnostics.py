"""The diagnostics page in a real browser (Debian's headless chromium, a real ``workbench up``): a paper
session whose trading hours blocked entries shows its log and its why-no-trades counts by rule."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.kit import bars_for, paper_config
from workbench.diagnostics.why import session_counts, why_summary
from workbench.engine.feeds import ReplayFeed
from workbench.engine.session import Session
from workbench.store import Store

from .conftest import Served
from .test_dashboards import CHROMIUM, SEE, browser, open_page, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                                 "/usr/bin/chromium (apt-get install chromium; .ci/run does it)")]


def blocked_session(served: Served) -> tuple[str, int]:
    """A paper session run to its end in the served store; entries before 08:00 are blocked."""
    store = Store(served.db_url)
    cfg = paper_config(name="diagnostics demo", time={"trading_hours": {"start": "08:00", "end": "24:00"}})
    session = Session(cfg, store, feed=ReplayFeed(bars_for(cfg), None))
    with ThreadPoolExecutor(1) as pool:  # its own thread: Playwright's sync API runs a loop in this one
        assert pool.submit(asyncio.run, session.run()).result().value == "completed"
    counts = session_counts(store, session.id)
    assert counts is not None
    return session.id, why_summary(counts)["blocked"]["trading_hours"]


def test_diagnostics_page_shows_the_log_and_why_no_trades(served, page):  # noqa: F811 (the fixture)
    sid, blocked = blocked_session(served)
    open_page(page, served, "diagnostics", f"id={sid}", ready=".wb-diag-log-table")
    table = page.locator(".wb-diag-log-table")
    assert "order_rejected" in table.inner_text() and "trading_hours" in table.inner_text()
    assert page.locator("a.wb-diag-log-csv").count() == 1
    page.locator(".wb-diag-log-level select").select_option("warning")
    page.locator(".wb-diag-log-apply").click()
    page.wait_for_function("() => !document.querySelector('.wb-diag-log-table').innerText.includes('running')",
                           timeout=SEE)
    page.locator(".wb-diag-tabs .lm-TabBar-tab", has_text="Why no trades").click()
    page.wait_for_selector(".wb-diag-why-blocked", timeout=SEE)
    text = page.locator(".wb-diag-why-blocked").inner_text()
    assert "trading_hours" in text and str(blocked) in text
    assert f"blocked: trading_hours {blocked}" in page.locator(".wb-diag-why-summary").inner_text()
    shot(page, "diagnostics-why", ".wb-diag-why")
    assert not page.js_errors  # type: ignore[attr-defined]
