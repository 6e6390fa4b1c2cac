"""A/B tests: variants of one config run on one shared feed, compared with a statistical verdict.

:func:`ab_backtest` runs them as backtests on bars loaded once, :func:`ab_paper` as paper sessions on
one replayed feed; both return an :class:`ABResult` whose ``verdict`` (:mod:`workbench.ab.stats`)
says which variant wins, if any, and how sure that is. ``workbench ab`` is the command line,
:mod:`workbench.ui.ab` the comparison view.
"""
from workbench.ab.backtest import ab_backtest
from workbench.ab.live import StoredBarsFeed, ab_beside, ab_beside_request
from workbench.ab.paper import EarlyStop, ab_equity, ab_paper, ab_sessions
from workbench.ab.result import ABResult, judge, verdict_returns
from workbench.ab.stats import Verdict, verdict
from workbench.ab.variants import Variant, make_variants, parse_variant

__all__ = [
    "ABResult", "EarlyStop", "StoredBarsFeed", "Variant", "Verdict", "ab_backtest", "ab_beside", "ab_beside_request",
    "ab_equity", "ab_paper", "ab_sessions", "judge",
    "make_variants", "parse_variant", "verdict", "verdict_returns",
]
