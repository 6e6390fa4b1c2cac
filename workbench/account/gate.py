"""The account gate: the risk policy enforced in front of every session's entries.

Each session reports what it holds (:meth:`AccountGate.report`: value per symbol at its marks, and
its P&L of the day); before an entry leaves, :meth:`AccountGate.check` adds the order's value to
what all the sessions of the same account hold and refuses it when a limit would be passed: the
account's total exposure, the symbol's, the symbol's sector's and the venue's, or when the
account's loss of the day has reached its limit. A refusal is a :class:`Breach` naming the rule
and the numbers, like a session's own limits. Exits are never refused here. One gate serves every
session of a process (``workbench host``); :meth:`usage` is what the risk dashboard shows.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.account.policy import ANY, AccountLimits, PolicyError, RiskPolicy, load_policy, policy_path
from workbench.account.sectors import sector_of
from workbench.execution.legs import market_symbol

#: the gate's rules, as a Breach names them
TOTAL, SYMBOL, SECTOR, VENUE, DAILY_LOSS, HEALTH = ("account_exposure", "account_symbol", "account_sector",
                                                    "account_venue", "account_daily_loss", "account_venue_health")
USAGE_COLUMNS = ("account", "rule", "key", "limit", "used", "share")


@dataclass(frozen=True)
class Breach:
    """An entry refused by an account limit: ``used`` is what the account's sessions hold already."""

    rule: str
    account: str
    key: str
    limit: float
    used: float
    order_value: float

    def numbers(self) -> dict[str, float | str]:
        return {"account": self.account, "key": self.key, "limit": self.limit, "used": self.used,
                "order_value": self.order_value}

    def __str__(self) -> str:
        if self.rule == DAILY_LOSS:
            return f"{self.rule}: account {self.account} lost {self.used:,.2f} today (limit {self.limit:,.2f})"
        if self.rule == HEALTH:
            return f"{self.rule}: {self.key} scores {self.used:.0f} of 100 (the policy needs {self.limit:.0f})"
        return (f"{self.rule}: account {self.account} {self.key} holds {self.used:,.2f}; "
                f"+{self.order_value:,.2f} would pass the limit {self.limit:,.2f}")


@dataclass
class _Book:
    account: str
    venue: str
    values: dict[str, float]
    day_pnl: float


class AccountGate:
    """Account-wide limits over the sessions that :meth:`report` to it (thread-safe)."""

    def __init__(self, policy: RiskPolicy | None = None, path: str | Path | None = None):
        self.policy = policy or RiskPolicy()
        self.path = Path(path) if path is not None else None
        self._stamp: tuple[float, int] | None = None
        self._books: dict[str, _Book] = {}
        self._health: dict[str, float] = {}  # venue -> score (set_health)
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
               day_pnl: float = 0.0) -> None:
        """What ``session_id`` holds now (symbol -> value at its marks) and its P&L since 00:00 UTC; legs'
        positions (``SYMBOL@leg``) count as their market symbol."""
        held: dict[str, float] = {}
        for k, v in values.items():
            if v:
                held[market_symbol(k)] = held.get(market_symbol(k), 0.0) + float(v)
        with self._lock:
            self._books[session_id] = _Book(account, venue, held, day_pnl)

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
        with self._lock:
            books = [b for b in self._books.values() if b.account == account]
        loss = -sum(b.day_pnl for b in books)
        if limits.daily_loss is not None and loss >= limits.daily_loss:
            return Breach(DAILY_LOSS, account, "day", limits.daily_loss, loss, order_value)
        health = self._health.get(venue)
        if limits.min_venue_health is not None and health is not None and health < limits.min_venue_health:
            return Breach(HEALTH, account, venue, limits.min_venue_health, health, order_value)
        sector = sector_of(symbol, self.policy.sectors)
        for rule, key, limit, used in (
            (TOTAL, "total", limits.total_exposure, _held(books)),
            (SYMBOL, symbol, _keyed(limits.per_symbol, symbol), _held(books, lambda s: s == symbol)),
            (SECTOR, sector, _keyed(limits.per_sector, sector),
             _held(books, lambda s: sector_of(s, self.policy.sectors) == sector)),
            (VENUE, venue, _keyed(limits.per_venue, venue), _held([b for b in books if b.venue == venue])),
        ):
            if limit is not None and used + order_value > limit * (1 + 1e-12):
                return Breach(rule, account, key, limit, used, order_value)
        return None

    def usage(self) -> pd.DataFrame:
        """Every limit of the policy with what the accounts' sessions use of it (``USAGE_COLUMNS``)."""
        with self._lock:
            books = list(self._books.values())
        rows = []
        accounts = {b.account for b in books} | {a for a in self.policy.accounts if a != ANY}
        for account in sorted(accounts):
            limits = self.policy.limits_for(account)
            if limits is None:
                continue
            mine = [b for b in books if b.account == account]
            rows += _usage_rows(account, limits, mine, self.policy.sectors)
        frame = pd.DataFrame(rows, columns=list(USAGE_COLUMNS[:-1]))
        frame["share"] = frame["used"] / frame["limit"]
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
