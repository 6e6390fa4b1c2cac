"""Account truth at the start of a live session: its budget against the exchange's free balance.

A live session is an allocation within an exchange account: its ``initial_balance`` must be free on the
account (in the quote currency of its symbols) beyond what the other live sessions on the same
``exchange:account`` still hold as cash (from the store: their last checkpoint's cash, else their
``initial_balance``, less what their open buy orders lock on the exchange, which the exchange already
leaves out of "free"). :func:`budget` reads the numbers (one ``fetch_balance``), :func:`budget_problem`
is the rule (pure, for ``workbench preflight`` too), :func:`check_budget` refuses a session with
:class:`BudgetExceeded` and a ``budget_exceeded`` event naming the numbers and what to do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.config import SessionConfig, is_perp
from workbench.config import quote_of as symbol_quote
from workbench.domain import SessionKind, SessionState
from workbench.store import Store

if TYPE_CHECKING:
    from workbench.engine.ccxt_broker import CcxtBroker


class BudgetExceeded(RuntimeError):
    """A live session's allocation is more than the account has free for it; the message says what to do."""


@dataclass(frozen=True)
class Budget:
    """The numbers of a budget check: ``free`` quote on the account, the ``others``' claims (session id ->
    quote), and the session's ``allocation``."""

    account: str  # "<exchange>:<account>"
    quote: str
    allocation: float
    free: float
    others: dict[str, float] = field(default_factory=dict)

    @property
    def available(self) -> float:
        """What is free for this session: the free balance less the other sessions' claims."""
        return self.free - sum(self.others.values())

    def problem(self) -> str | None:
        """Why the allocation does not fit (None if it does); see :func:`budget_problem`."""
        return budget_problem(self.allocation, self.free, self.others, self.quote, self.account)


def budget_problem(allocation: float, free: float, others: dict[str, float], quote: str,
                   account: str = "the account") -> str | None:
    """The rule: ``allocation`` must be <= ``free`` - sum(``others``). Returns what is wrong and what to do,
    or None."""
    claimed = sum(others.values())
    available = free - claimed
    if allocation <= available * (1 + 1e-9) + 1e-9:
        return None
    held = (f" of which {claimed:,.2f} is held by {len(others)} other live session(s) on it "
            f"({', '.join(sorted(others))})") if others else ""
    return (f"initial_balance {allocation:,.2f} {quote} is more than {account} has free for this session: "
            f"{free:,.2f} {quote} free{held}, leaving {max(available, 0.0):,.2f}. Lower initial_balance to at "
            f"most {max(available, 0.0):,.2f}, deposit {allocation - available:,.2f} {quote}, or stop another "
            "session on the account")


def quote_of(config: SessionConfig) -> str:
    """The quote currency of the session's symbols (its cash); they must share one."""
    quotes = sorted({symbol_quote(s) for s in config.symbols})
    if len(quotes) != 1:
        raise ValueError(f"a live session's symbols must share one quote currency (its cash); got {quotes}")
    return quotes[0]


def other_claims(store: Store, config: SessionConfig, session_id: str | None = None) -> dict[str, float]:
    """Cash the other not-ended live sessions on ``config``'s exchange and account hold, by session id:
    their last checkpoint's cash (else their ``initial_balance``) less what their open buy orders lock."""
    out: dict[str, float] = {}
    rows = store.list_sessions(kind=SessionKind.LIVE)
    for sid, state in zip(rows["id"], rows["state"], strict=True):
        if sid == session_id or SessionState(state).is_final:
            continue
        row = store.get_session(sid)
        other = row.get("config")
        if other is None or other.data.exchange != config.data.exchange or other.live.account != config.live.account:
            continue
        runner = store.load_runner_state(sid) or {}
        cash = float((runner.get("portfolio") or {}).get("cash", other.initial_balance))
        orders = store.orders(sid, status=["new", "partially_filled"])
        locked = sum(float(r.quantity - r.filled_quantity) * float(r.limit_price)
                     for r in orders.itertuples(index=False) if r.side == "buy" and r.limit_price == r.limit_price)
        out[sid] = max(cash - locked, 0.0)
    return out


async def budget(client: CcxtBroker, config: SessionConfig, store: Store, session_id: str | None = None) -> Budget:
    """The budget numbers of ``config`` now: the account's free quote balance (one ``fetch_balance``) and
    the other live sessions' claims (``session_id``: the session itself, left out)."""
    quote = quote_of(config)
    bal: dict[str, Any] = await client.wallet(perps=any(is_perp(s) for s in config.symbols))  # futures wallet
    free = float((bal.get("free") or {}).get(quote) or 0.0)
    return Budget(f"{config.data.exchange}:{config.live.account}", quote, float(config.initial_balance), free,
                  other_claims(store, config, session_id))


async def check_budget(client: CcxtBroker, config: SessionConfig, store: Store, session_id: str) -> Budget:
    """Refuse to start a live session whose allocation does not fit (:class:`BudgetExceeded`, after a
    ``budget_exceeded`` event with the numbers); else a ``budget_checked`` event. Returns the numbers."""
    b = await budget(client, config, store, session_id)
    data = {"quote": b.quote, "allocation": b.allocation, "free": b.free, "others": b.others,
            "available": b.available}
    problem = b.problem()
    if problem:
        store.add_event(session_id, "budget_exceeded", problem, data, actor="broker")
        raise BudgetExceeded(problem)
    store.add_event(session_id, "budget_checked", f"initial_balance {b.allocation:,.2f} {b.quote} fits: "
                    f"{b.available:,.2f} free on {b.account} for this session", data, actor="broker")
    return b
