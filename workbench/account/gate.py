"""The account gate: the risk policy enforced in front of every session's entries.

Each session reports what it holds (:meth:`AccountGate.report`: value per symbol at its marks, and
its P&L of the day); before an entry leaves, :meth:`AccountGate.check` adds the order's value to
what all the sessions of the same account hold and refuses it when a limit would be passed: the
account's total exposure, the symbol's, the symbol's sector's and the venue's, or when the
account's loss of the day has reached its limit. A refusal is a :class:`Breach` naming the rule
and the numbers, like a session's own limits. Exits are never refused here. One gate serves every
session of a process (``workbench host``); :meth:`usage` is what the risk dashboard shows.

Currencies: the policy's amounts are in :attr:`AccountGate.currency`; each session reports in its own
base currency and its figures (and its orders' values) are converted at the latest known rate
(:mod:`workbench.account.rates`) before they are summed. A session holding something (or with a P&L
today) whose currency has no known rate cannot be counted, so while it lasts every entry of its
account is refused by the rule ``account_currency``, naming the session and the currency, wherever the
account has a money limit; exits still run. The usage lists such a session under the same rule.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.account.policy import ANY, AccountLimits, PolicyError, RiskPolicy, load_policy, policy_path
from workbench.account.rates import Rates
from workbench.account.sectors import sector_of
from workbench.execution.legs import market_symbol

#: the gate's rules, as a Breach names them
TOTAL, SYMBOL, SECTOR, VENUE, DAILY_LOSS, HEALTH = ("account_exposure", "account_symbol", "account_sector",
                                                    "account_venue", "account_daily_loss", "account_venue_health")
CURRENCY = "account_currency"
#: the policy's currency when it names none and the sessions do not share one
DEFAULT_CURRENCY = "USDT"
USAGE_COLUMNS = ("account", "rule", "key", "limit", "used", "share", "currency")


@dataclass(frozen=True)
class Breach:
    """An entry refused by an account limit: ``used`` is what the account's sessions hold already, all
    amounts in ``currency`` (the policy's). For ``account_currency`` the ``key`` is the session that cannot be
    converted and ``unconverted`` its currency (``limit``, ``used``: NaN)."""

    rule: str
    account: str
    key: str
    limit: float
    used: float
    order_value: float
    currency: str = DEFAULT_CURRENCY
    unconverted: str = ""

    def numbers(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {"account": self.account, "key": self.key, "limit": self.limit,
                                       "used": self.used, "order_value": self.order_value, "currency": self.currency}
        return {**out, "unconverted": self.unconverted} if self.unconverted else out

    def __str__(self) -> str:
        c = self.currency
        if self.rule == CURRENCY:
            return (f"{self.rule}: session {self.key} keeps its books in {self.unconverted} and no {self.unconverted}"
                    f" to {c} rate is known, so account {self.account}'s limits (in {c}) cannot count it: entries "
                    f"are refused until a rate is known (trade {self.unconverted}/{c} in a session, or give its bars)")
        if self.rule == DAILY_LOSS:
            return f"{self.rule}: account {self.account} lost {self.used:,.2f} {c} today (limit {self.limit:,.2f} {c})"
        if self.rule == HEALTH:
            return f"{self.rule}: {self.key} scores {self.used:.0f} of 100 (the policy needs {self.limit:.0f})"
        return (f"{self.rule}: account {self.account} {self.key} holds {self.used:,.2f} {c}; "
                f"+{self.order_value:,.2f} {c} would pass the limit {self.limit:,.2f} {c}")


@dataclass
class _Book:
    account: str
    venue: str
    values: dict[str, float]
    day_pnl: float
    currency: str | None = None  # None: the policy's

    def scaled(self, rate: float) -> _Book:
        return _Book(self.account, self.venue, {s: v * rate for s, v in self.values.items()}, self.day_pnl * rate)


class AccountGate:
    """Account-wide limits over the sessions that :meth:`report` to it (thread-safe)."""

    def __init__(self, policy: RiskPolicy | None = None, path: str | Path | None = None):
        self.policy = policy or RiskPolicy()
        self.path = Path(path) if path is not None else None
        self._stamp: tuple[float, int] | None = None
        self._books: dict[str, _Book] = {}
        self._health: dict[str, float] = {}  # venue -> score (set_health)
        self.rates = Rates()  # the latest known prices: the sessions' marks, and load_rates
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> AccountGate:
        """A gate over the policy file (default ``risk-policy.yaml`` in the workbench home); a bad file
        raises :class:`PolicyError` (a host must not trade without the limits its operator wrote)."""
        gate = cls(path=path if path is not None else policy_path())
        gate.reload_if_changed(strict=True)
        return gate

    def reload_if_changed(self, *, strict: bool = False) -> str | None:
        """Read the policy file again if it changed; a bad new file keeps the policy in force and is
        returned as the problem (raised with ``strict``). A removed file means no account limits."""
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp and not strict:
            return None
        try:
            self.policy = load_policy(self.path)
        except PolicyError as e:
            if strict:
                raise
            return f"{e} (the previous policy stays in force)"
        finally:
            self._stamp = stamp
        return None

    def report(self, session_id: str, account: str, venue: str, values: Mapping[str, float],
               day_pnl: float = 0.0, *, currency: str | None = None, marks: Mapping[str, float] | None = None) -> None:
        """What ``session_id`` holds now (symbol -> value at its marks) and its P&L since 00:00 UTC, in its base
        ``currency`` (None: the policy's); ``marks`` (symbol -> price) are prices the gate converts with. Legs'
        positions (``SYMBOL@leg``) count as their market symbol."""
        held: dict[str, float] = {}
        for k, v in values.items():
            if v:
                held[market_symbol(k)] = held.get(market_symbol(k), 0.0) + float(v)
        with self._lock:
            if marks and currency:
                self.rates.observe(currency, marks)
            self._books[session_id] = _Book(account, venue, held, day_pnl, currency)

    @property
    def currency(self) -> str:
        """The currency of the policy's amounts: the policy's ``currency``, else the one currency all the
        reporting sessions keep their books in, else USDT."""
        if self.policy.currency:
            return self.policy.currency
        with self._lock:
            known = {b.currency for b in self._books.values() if b.currency}
        return known.pop() if len(known) == 1 else DEFAULT_CURRENCY

    def load_rates(self, load: Callable[[str], pd.DataFrame], *, refresh: bool = False) -> list[str]:
        """The rate of each reporting session's currency that has none (``refresh``: of each) from its
        conversion pair's last close, ``load(pair)`` giving bars (e.g. :func:`workbench.account.rates.sources_loader`);
        returns a line per currency that could not be loaded (its last known rate, if any, stays)."""
        with self._lock:
            currencies = {b.currency for b in self._books.values() if b.currency}
        return self.rates.load(currencies, self.currency, load, refresh=refresh)

    def set_health(self, scores: Mapping[str, float]) -> None:
        """The venues' health scores now (:func:`workbench.account.health.venue_health`)."""
        self._health = dict(scores)

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._books.pop(session_id, None)

    def check(self, account: str, venue: str, symbol: str, order_value: float, *,
              session_id: str | None = None) -> Breach | None:
        """The first account limit an entry of ``order_value`` in ``symbol`` would pass, else None."""
        symbol = market_symbol(symbol)  # a leg's column key: its market symbol
        limits = self.policy.limits_for(account)
        if limits is None:
            return None
        into = self.currency
        books, unknown = self._converted(account, into)
        with self._lock:
            own = self._books.get(session_id) if session_id is not None else None
        rate = self._rate(own, into)
        if rate is None and own is not None and session_id is not None:
            unknown[session_id] = str(own.currency)  # its own order's value cannot be converted either
        if limits.in_money and unknown:
            sid = session_id if session_id in unknown else min(unknown)
            return Breach(CURRENCY, account, sid, float("nan"), float("nan"), order_value, into, unknown[sid])
        order_value *= rate or 1.0
        loss = -sum(b.day_pnl for b in books)
        if limits.daily_loss is not None and loss >= limits.daily_loss:
            return Breach(DAILY_LOSS, account, "day", limits.daily_loss, loss, order_value, into)
        health = self._health.get(venue)
        if limits.min_venue_health is not None and health is not None and health < limits.min_venue_health:
            return Breach(HEALTH, account, venue, limits.min_venue_health, health, order_value, into)
        sector = sector_of(symbol, self.policy.sectors)
        for rule, key, limit, used in (
            (TOTAL, "total", limits.total_exposure, _held(books)),
            (SYMBOL, symbol, _keyed(limits.per_symbol, symbol), _held(books, lambda s: s == symbol)),
            (SECTOR, sector, _keyed(limits.per_sector, sector),
             _held(books, lambda s: sector_of(s, self.policy.sectors) == sector)),
            (VENUE, venue, _keyed(limits.per_venue, venue), _held([b for b in books if b.venue == venue])),
        ):
            if limit is not None and used + order_value > limit * (1 + 1e-12):
                return Breach(rule, account, key, limit, used, order_value, into)
        return None

    def _rate(self, book: _Book | None, into: str) -> float | None:
        return 1.0 if book is None or not book.currency else self.rates.rate(book.currency, into)

    def _converted(self, account: str, into: str) -> tuple[list[_Book], dict[str, str]]:
        """The account's books in ``into``, and the sessions (-> currency) holding something that cannot be."""
        with self._lock:
            mine = [(sid, b) for sid, b in self._books.items() if b.account == account]
        books, unknown = [], {}
        for sid, b in mine:
            rate = self._rate(b, into)
            if rate is not None:
                books.append(b.scaled(rate) if rate != 1.0 else b)
            elif b.values or b.day_pnl:
                unknown[sid] = str(b.currency)
        return books, unknown

    def usage(self) -> pd.DataFrame:
        """Every limit of the policy with what the accounts' sessions use of it (``USAGE_COLUMNS``)."""
        with self._lock:
            accounts = {b.account for b in self._books.values()} | {a for a in self.policy.accounts if a != ANY}
        into = self.currency
        rows = []
        for account in sorted(accounts):
            limits = self.policy.limits_for(account)
            if limits is None:
                continue
            books, unknown = self._converted(account, into)
            rows += _usage_rows(account, limits, books, self.policy.sectors)
            if limits.in_money:
                nan = float("nan")
                rows += [(account, CURRENCY, f"{sid} in {cur}: no rate into {into}", nan, nan)
                         for sid, cur in sorted(unknown.items())]
        frame = pd.DataFrame(rows, columns=list(USAGE_COLUMNS[:-2]))
        frame["share"] = frame["used"] / frame["limit"]
        frame["currency"] = into
        return frame


def _keyed(table: Mapping[str, float], key: str) -> float | None:
    return table.get(key, table.get(ANY))


def _held(books: list[_Book], which: Callable[[str], bool] | None = None) -> float:
    return sum(v for b in books for s, v in b.values.items() if which is None or which(s))


def _usage_rows(account: str, limits: AccountLimits, books: list[_Book],
                sectors: Mapping[str, str]) -> list[tuple[str, str, str, float, float]]:
    """(account, rule, key, limit, used) of each limit the account's policy sets."""
    held: dict[str, float] = {}
    by_sector: dict[str, float] = {}
    by_venue: dict[str, float] = {}
    for b in books:
        for s, v in b.values.items():
            held[s] = held.get(s, 0.0) + v
            sec = sector_of(s, sectors)
            by_sector[sec] = by_sector.get(sec, 0.0) + v
            by_venue[b.venue] = by_venue.get(b.venue, 0.0) + v
    rows = []
    if limits.total_exposure is not None:
        rows.append((account, TOTAL, "total", limits.total_exposure, sum(held.values())))
    if limits.daily_loss is not None:
        rows.append((account, DAILY_LOSS, "day", limits.daily_loss, max(-sum(b.day_pnl for b in books), 0.0)))
    for rule, table, used in ((SYMBOL, limits.per_symbol, held), (SECTOR, limits.per_sector, by_sector),
                              (VENUE, limits.per_venue, by_venue)):
        for key in sorted(set(used) | (set(table) - {ANY})):
            limit = _keyed(table, key)
            if limit is not None:
                rows.append((account, rule, key, limit, used.get(key, 0.0)))
    return rows
