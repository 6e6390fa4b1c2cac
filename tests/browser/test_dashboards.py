"""The dashboards in a real browser: Debian's headless chromium driven by Playwright, against a real
``workbench up`` (Voilà + ``workbench host`` + a SQLite store in a temporary ``$WORKBENCH_HOME``).
Screenshots of every step go to ``test-output/browser/``."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.serve import DEMO_SESSION_NAME
from workbench.store import Store

from .conftest import OUTPUT, Served

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
        "--no-first-run", "--disable-component-update", "--disable-sync"]
LOAD = 90_000  # ms: a Voilà page starts its own kernel, imports the package and renders
SEE = 45_000  # ms: a widget update, a host claim or a runner's reply to a command

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at "
                                 "/usr/bin/chromium (apt-get install chromium; .ci/run does it)")]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, request) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1800})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.js_errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            shot(pg, f"FAILED-{request.node.name}")
    finally:
        ctx.close()


def shot(pg, name: str, focus: str | None = None) -> None:
    """Screenshot into test-output/browser/, scrolled to ``focus`` (Voilà pages scroll an inner box, so
    a full-page shot shows only the part last scrolled to)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    if focus is not None:
        pg.locator(focus).first.scroll_into_view_if_needed()
    pg.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def open_page(pg, served: Served, name: str, query: str = "", ready: str = ".widget-button") -> None:
    """Open page ``name`` and wait for ``ready``; a page that never gets there fails with what the page
    shows and the server's last output (a timeout alone says nothing about why)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    pg.goto(served.url(name, query), timeout=LOAD)
    try:
        pg.wait_for_selector(ready, timeout=LOAD)
    except PlaywrightTimeout:
        shown = pg.locator("body").inner_text()[-2000:]
        raise AssertionError(f"{name}: no {ready} after {LOAD / 1000:g} s; the page shows:\n{shown}\n"
                             f"the server's last output:\n{served.output()[-4000:]}") from None
    assert not pg.locator("text=error when executing").count(), f"{name} shows an error"


def current_step(pg) -> str:
    return pg.locator(".wb-wizard-steps b").first.inner_text()


def wizard_next(pg) -> None:
    """Click Next and wait for the kernel to show the next step (or an error)."""
    before = current_step(pg)
    pg.locator(".wb-wizard-next").click()
    pg.wait_for_function(
        """([before]) => {
            const b = document.querySelector('.wb-wizard-steps b');
            const s = document.querySelector('.wb-wizard-summary');
            return (b && b.innerText !== before) || (s && s.innerText.trim() !== '');
        }""", arg=[before], timeout=SEE)


def wizard_to(pg, heading: str) -> None:
    """Click the wizard's Next until the step ``heading`` (e.g. "Trading") is the current one."""
    for _ in range(7):
        if heading in current_step(pg):
            return
        wizard_next(pg)
    raise AssertionError(f"wizard never reached step {heading!r}; it is at {current_step(pg)!r}")


def fill(pg, field: str, value: str) -> None:
    box = pg.locator(f".wb-field-{field} input").first
    box.fill(value)
    box.press("Enter")
    box.blur()


def state_of(served: Served, session_id: str) -> str:
    return str(Store(served.db_url).get_session(session_id)["state"])


def wait_state(served: Served, session_id: str, states: set[str], timeout: float = SEE / 1000) -> str:
    deadline = time.monotonic() + timeout
    while (state := state_of(served, session_id)) not in states and time.monotonic() < deadline:
        time.sleep(0.2)
    return state


PHONE = {"width": 390, "height": 844}
RED, GREEN = "rgb(198, 40, 40)", "rgb(46, 125, 50)"  # common.STATE_COLORS / RISK_COLORS: halted, running


def test_phone_sized_sessions_page_fits_with_the_header_and_a_tripped_session_in_colour(served, browser):
    """First in the module: the demo paper session `up` started is still running (issue 16's console look)."""
    store = Store(served.db_url)
    demo = store.list_sessions(kind="paper")
    demo = str(demo[demo["name"] == DEMO_SESSION_NAME]["id"].iloc[0])
    assert wait_state(served, demo, {"running"}) == "running"
    store.send_command(demo, "trip_breaker", {"reason": "browser test"}, actor="test")
    ctx = browser.new_context(viewport=PHONE)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        open_page(pg, served, "sessions", ready=".wb-header .wb-equity")
        halted = pg.locator(f".wb-session-{demo} .wb-risk-halted")
        halted.wait_for(timeout=SEE)  # the row reads "running · halted", not just "running"
        state = pg.locator(f".wb-session-{demo} .wb-state").inner_text()
        assert re.sub(r"\s+", " ", state).strip() == "running · halted", state
        color = "el => getComputedStyle(el).color"
        assert halted.evaluate(color) == RED
        assert pg.locator(f".wb-session-{demo} .wb-state-running").evaluate(color) == GREEN
        pg.locator(".wb-header .wb-alert", has_text="circuit breaker tripped").wait_for(timeout=SEE)
        header = pg.locator(".wb-header").first
        box = header.bounding_box()
        assert header.is_visible() and box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        said = header.inner_text().replace("\xa0", " ")
        assert "Equity $" in said and "Day P&L" in said and "Exposure $" in said and "1 halted" in said, said
        widths = pg.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth, "
                             "document.querySelector('#rendered_cells')?.scrollWidth ?? 0]")
        assert widths[0] <= widths[1] and widths[2] <= widths[1], widths  # nothing wider than the phone
        table = pg.locator(".wb-sessions-table")
        assert table.evaluate("el => getComputedStyle(el).overflowX") == "auto"  # the table scrolls, not the page
        shot(pg, "00-phone-sessions")
        assert not errors, errors
    finally:
        ctx.close()


def test_invalid_balance_shows_the_fields_error(served, page):
    open_page(page, served, "sessions", ready=".wb-wizard-next")
    page.get_by_text("Paper Trading", exact=True).click()
    wizard_to(page, "Trading")
    fill(page, "initial_balance", "-5")
    wizard_next(page)
    error = page.locator(".wb-error-initial_balance")
    error.filter(has_text=re.compile(r"\S")).wait_for(timeout=SEE)
    shot(page, "01-invalid-balance", ".wb-wizard")
    assert re.search(r"greater than 0|positive|> ?0", error.inner_text(), re.I), error.inner_text()
    assert "Trading" in current_step(page)  # it stayed on the step with the error
    fill(page, "initial_balance", "2500")
    page.locator(".wb-wizard-next").click()  # fixed: the wizard moves on to the next step
    page.locator(".wb-wizard-steps b").filter(has_text="Risk").wait_for(timeout=SEE)


def test_paper_session_create_pause_detail_stop(served, page):
    open_page(page, served, "sessions", ready=".wb-wizard-next")
    shot(page, "02-sessions")
    # one page title (the dashboard's markdown), then section headings
    titles = page.locator("h1").all_inner_texts()
    assert len(titles) == 1 and "Workbench" in titles[0], titles
    assert page.locator(".wb-page h1, .wb-page h2").count() == 0
    page.get_by_text("Paper Trading", exact=True).click()
    wizard_to(page, "Review")
    page.get_by_text("Request from workbench host").click()
    page.locator(".wb-wizard-create").click()

    # the host claims it; the sessions table (refreshed from the store) shows it running
    mine = lambda: (p := Store(served.db_url).list_sessions(kind="paper"))[p["name"] != DEMO_SESSION_NAME]  # noqa: E731
    deadline = time.monotonic() + SEE / 1000
    while mine().empty and time.monotonic() < deadline:
        time.sleep(0.2)
    paper = mine()
    assert len(paper) == 1  # one click, one session (beside the demo session `up` started)
    sid = str(paper["id"].iloc[0])
    row = page.locator(f".wb-session-{sid}").filter(has_text=re.compile("running", re.I))
    row.wait_for(timeout=SEE)
    shot(page, "03-created-running", ".wb-sessions-table")
    assert state_of(served, sid) == "running"
    assert page.locator(f".wb-create-result a.wb-open-detail[href='session.ipynb?id={sid}']").count() == 1

    # pause from the dashboard: the runner applies the command, the page shows the new state
    row.locator(".wb-session-open").click()  # (the wizard already selected it: this is what a user does)
    page.locator(".wb-controls .wb-btn-pause:not([disabled])").first.click()
    page.locator(".wb-controls .wb-state", has_text=re.compile("paused", re.I)).first.wait_for(timeout=SEE)
    page.locator(f".wb-session-{sid} .wb-state", has_text=re.compile("paused", re.I)).wait_for(timeout=SEE)  # table
    assert wait_state(served, sid, {"paused"}) == "paused"
    shot(page, "04-paused", ".wb-sessions-table")

    # the detail page of that session draws its equity curve
    open_page(page, served, "session", f"id={sid}", ready=".wb-equity-chart")
    line = page.locator(".wb-equity-chart svg path.js-line").first
    line.wait_for(state="attached", timeout=SEE)  # a flat line has no height: "visible" would never hold
    d = line.get_attribute("d") or ""
    assert re.match(r"M[\d.]+,[\d.]+L", d), f"equity line draws no segment: {d[:80]!r}"  # >= 2 points
    assert len(Store(served.db_url).equity(sid)) >= 2
    shot(page, "05-detail", ".wb-equity-chart")
    risk_text = page.locator(".wb-risk-metrics").first.inner_text()
    assert "Exposure now" in risk_text and "Risk state" not in risk_text and "Trading state" not in risk_text  # paused
    trades_text = page.locator(".wb-trades").first.inner_text().strip()  # trades so far, rebuilt from the fills
    assert trades_text == "no fills yet" or trades_text.startswith("Symbol"), trades_text
    assert "Realized P&L" in page.locator(".wb-pnl-limits").first.inner_text()

    page.locator(".wb-btn-stop:not([disabled])").first.click()
    page.locator(".wb-state", has_text=re.compile("stopped", re.I)).first.wait_for(timeout=SEE)
    assert wait_state(served, sid, {"stopped"}) == "stopped"
    shot(page, "06-stopped", ".wb-controls")
    assert not page.js_errors, page.js_errors


def test_every_page_has_something_to_show_and_links_to_the_others(served, page):
    open_page(page, served, "history", ready=".wb-history-row")
    assert page.locator(".wb-history-row", has_text="momentum").count() >= 1  # the demo backtest `up` seeded
    shown = page.eval_on_selector_all(".wb-history select", "els => els.map(e => e.selectedIndex < 0 ? '' : "
                                      "e.options[e.selectedIndex].text.replace(/\\u00a0/g, ' '))")  # nbsp: a space
    assert shown == ["All", "All", "All", "(default config)", "(none)"], shown  # kind, strategy, market, template,
    # profile: no dropdown renders blank
    assert page.locator(".wb-header .wb-equity").count() == 1
    shot(page, "07-history", ".wb-history")
    page.get_by_role("link", name="Risk").click()
    page.wait_for_selector(".wb-risk", timeout=LOAD)
    assert "/voila/render/risk.ipynb" in page.url
    assert page.locator(".wb-risk").inner_text().strip()
    shot(page, "08-risk", ".wb-risk")
    assert page.locator(".wb-header .wb-equity").count() == 1  # the console header, on this page too
    page.locator(".wb-header .wb-test-alert").first.click()  # its Test alert: `up` was given no alert URL
    page.locator(".wb-test-alert-status", has_text=re.compile("no alert URL: set WORKBENCH_ALERTS|delivered")
                 ).first.wait_for(timeout=SEE)
    runs = Store(served.db_url).history()
    demo = str(runs[runs["kind"] == "backtest"]["id"].iloc[0])  # the demo backtest `up` seeded
    open_page(page, served, "session", f"id={demo}", ready=".wb-equity-chart")
    # the page is sent before its data (workbench.ui.pages.FIRST_READ): the data follows with no user action
    page.locator(".wb-trades-table tr").nth(2).wait_for(state="attached", timeout=SEE)  # header + trade rows
    page.wait_for_function("""() => { const d = document.querySelector('.wb-equity-chart .js-plotly-plot');
        return d && d.data && d.data[0].x.length > 100; }""", timeout=SEE)  # the stored equity curve, drawn
    assert "Sharpe" in page.locator(".wb-performance").first.inner_text()
    page.get_by_role("tab", name="Trade review").click()  # built when first opened
    page.locator(".wb-review-attribution-table", has_text="BTC/USDT").wait_for(timeout=SEE)
    page.wait_for_function("""() => { const d = document.querySelector('.wb-review-figures .js-plotly-plot');
        return d && d.data && d.data.length === 2 && d.data[0].x.length + d.data[1].x.length > 100; }""",
                           timeout=SEE)  # P&L against holding time: wins and losses, every closed trade
    shot(page, "08b-trade-review", ".wb-review")
    for query, says in (("", "No session selected"), ("id=no-such-session", "There is no session")):
        open_page(page, served, "session", query, ready=".wb-page-message")
        assert says in page.locator(".wb-page-message").inner_text()
        assert page.locator(".wb-header .wb-equity").count() == 1
    shot(page, "09-unknown-session", ".wb-page-message")
    assert not page.js_errors, page.js_errors


def test_charts_share_one_copy_of_plotly_per_page(served, page):
    """Four charts on one page (equity, price, and the trade review's two) fetch plotly's widget bundle once,
    from the file `workbench up` serves; before, each FigureWidget carried the 5 MB bundle over the websocket."""
    bundles: list[str] = []
    received: list[int] = []
    page.on("request", lambda r: bundles.append(r.url) if r.url.endswith("/widgetbundle.js") else None)
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: received.append(len(f))))
    runs = Store(served.db_url).history()
    demo = str(runs[runs["kind"] == "backtest"]["id"].iloc[0])
    open_page(page, served, "session", f"id={demo}", ready=".wb-equity-chart")
    page.get_by_role("tab", name="Trade review").click()
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=SEE)
    assert len(bundles) == 1 and "/voila/labextensions/workbench-plotly/widgetbundle.js" in bundles[0], bundles
    assert sum(received) < 3_000_000, f"{sum(received)} bytes over the kernel's websocket"
    assert not page.js_errors, page.js_errors


def test_the_legs_tab_lists_each_leg_with_its_allocation(served, page):
    """A multi-strategy backtest saved to the served store: its detail view's Legs tab (workbench/ui/legs.py)."""
    from tests.kit import bars_for
    from tests.test_legs import legs_config
    from workbench.backtest import run_backtest

    config = legs_config(kind="backtest")
    result = run_backtest(config, bars={s: df.iloc[:600] for s, df in bars_for(config).items()})
    with Store(served.db_url) as store:
        sid = store.save_backtest(config, result)
    open_page(page, served, "session", f"id={sid}", ready=".wb-equity-chart")
    page.get_by_role("tab", name="Legs").click()  # built when first opened
    table = page.locator(".wb-legs-table")
    table.locator("text=mean_reversion").wait_for(timeout=SEE)
    text = table.inner_text()
    assert "trend" in text and "revert" in text and "60%" in text and "40%" in text
    shot(page, "10-legs-tab", ".wb-legs-table")
    assert not page.js_errors, page.js_errors
