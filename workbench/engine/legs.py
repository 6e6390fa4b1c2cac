"""The bar-by-bar trader of a multi-strategy session: one :class:`~workbench.engine.trader.Trader` whose
"symbols" are the legs' columns (:mod:`workbench.execution.legs`), each with its leg's strategy and its
entries sized by its leg's allocation, all in one portfolio (one cash balance, one risk engine).

Per-leg controls: :meth:`LegTrader.pause_leg` (no new entries of that leg; its exits still run) and
:meth:`LegTrader.set_leg_params` (the leg's strategy from the next bar). Both are in the snapshot.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from workbench.config import SessionConfig
from workbench.engine.brokers.base import Broker
from workbench.engine.commands import CommandRejected
from workbench.engine.risk import RiskEngine
from workbench.engine.trader import BarBuffer, Trader
from workbench.execution import Bar
from workbench.execution.ledger import Portfolio
from workbench.execution.legs import columns
from workbench.strategies.base import Strategy
from workbench.strategies.indicators import warm_up as warm_up_strategies

__all__ = ["LegTrader", "LegControls", "make_trader"]


class LegTrader(Trader):
    """A :class:`Trader` over the (leg, symbol) columns of a config with ``legs``. :meth:`step` takes the
    bars by symbol, as the feeds give them."""

    def __init__(self, config: SessionConfig, broker: Broker, *, risk: RiskEngine | None = None,
                 portfolio: Portfolio | None = None):
        if not config.legs:
            raise ValueError("LegTrader needs a config with legs; use Trader for a single-strategy session")
        self.columns = columns(config)
        self._alloc = {c.key: c.allocation for c in self.columns}
        self.leg_params = {leg.name: dict(leg.params) for leg in config.legs}
        self.strategies: dict[str, Strategy] = {}
        self.paused: set[str] = set()
        if risk is None:  # its checks see the columns as the session's symbols (orders, enable/disable_symbol)
            risk = RiskEngine(config.model_copy(update={"symbols": [c.key for c in self.columns]}))
        super().__init__(config, broker, risk=risk, portfolio=portfolio)
        self.symbols = [c.key for c in self.columns]
        self.pending = {k: (False, False) for k in self.symbols}
        self.pending_short = {k: (False, False) for k in self.symbols}
        self._leg_of = {c.key: c.leg for c in self.columns}

    def _leg(self, name: str) -> str:
        if name not in self.leg_params:
            raise ValueError(f"no leg {name!r}; this session's legs: {', '.join(self.leg_params)}")
        return name

    # ---- strategies ---------------------------------------------------------------
    def set_strategy(self, strategy: Strategy | None) -> None:
        """(Re)build each leg's strategy from :attr:`leg_params`; a given ``strategy`` is refused (legs
        have one each: :meth:`set_leg_params`)."""
        if strategy is not None:
            raise ValueError("a session with legs has a strategy per leg: change one with set_leg_params(leg, params)")
        from workbench.strategies import create

        self.strategies = {leg.name: create(leg.strategy, self.leg_params[leg.name]) for leg in self.config.legs}
        self.strategy = self.strategies[self.config.legs[0].name]  # the session's "strategy": the first leg's
        old = self.buffers
        self.buffers = {}
        for c in self.columns:
            lb = self.strategies[c.leg].lookback()
            self.buffers[c.key] = old[c.key].resized(lb) if c.key in old else BarBuffer(lb)
        warm_up_strategies()

    def set_leg_params(self, leg: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``params`` into leg ``leg``'s (validated by its strategy); returns the leg's params."""
        from workbench.strategies import registry

        spec = next(x for x in self.config.legs if x.name == self._leg(leg))
        merged = registry.validate_params(spec.strategy, {**self.leg_params[leg], **dict(params)})
        self.leg_params[leg] = merged
        self.set_strategy(None)
        self.leg_params[leg] = dict(self.strategies[leg].p)
        return self.leg_params[leg]

    def pause_leg(self, leg: str, paused: bool = True) -> None:
        """No new entries of ``leg`` while paused (its exits, stops and the session's controls still act)."""
        (self.paused.add if paused else self.paused.discard)(self._leg(leg))

    def entry_target(self, symbol: str, price: float, equity: float) -> float:
        return super().entry_target(symbol, price, equity) * self._alloc[symbol]

    def strategy_of(self, symbol: str) -> Strategy:
        return self.strategies[self._leg_of[symbol]]

    def sides(self, symbol: str) -> tuple[bool, bool, bool, bool]:
        """:meth:`Trader.sides`, without the entries of a paused leg (its exits, reversals' included, still act)."""
        le, lx, se, sx = super().sides(symbol)
        if self._leg_of[symbol] in self.paused:
            return False, lx, False, sx
        return le, lx, se, sx

    # ---- one bar time -------------------------------------------------------------
    def step(self, bars: Mapping[str, Bar], *, entries: bool = True, stopping: bool = False) -> float:
        """Trade one bar time; ``bars``: symbol -> bar (given to every leg trading that symbol)."""
        keyed = {c.key: bars[c.symbol] for c in self.columns if c.symbol in bars}
        if self.paused and self._direction == 1:  # long entry signals of a leg paused since they were computed
            # (with shorts an entry signal may be the other side's exit: sides() drops a paused leg's entries)
            pending = self.pending
            for c in self.columns:
                if c.leg in self.paused and pending[c.key][0]:
                    pending[c.key] = (False, pending[c.key][1])
        return super().step(keyed, entries=entries, stopping=stopping)

    def _strategy_signals(self, bars: Mapping[str, Bar], t_ns: int) -> None:
        buffers, pending, leg = self.buffers, self.pending, self._leg_of
        paused = self.paused if self._direction == 1 else set()  # with shorts sides() drops paused entries
        shorts = self._direction & 2 != 0
        for k, b in bars.items():
            buf = buffers[k]
            buf.append(t_ns, b)
            strategy = self.strategies[leg[k]]
            e, x = strategy.last_signal(buf.window())
            pending[k] = (e and not x and leg[k] not in paused, x and not e)  # live acts on them at once
            if shorts and strategy.own_shorts:
                e, x = strategy.last_short_signal(buf.window())
                self.pending_short[k] = (e and not x, x and not e)

    # ---- crash recovery -------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "legs": {"params": self.leg_params, "paused": sorted(self.paused)}}

    def restore(self, state: Mapping[str, Any], strategy: Strategy) -> None:
        """As :meth:`Trader.restore`; the legs' params and pauses come from the state (``strategy`` is unused)."""
        legs = state.get("legs", {})
        self.leg_params.update({k: dict(v) for k, v in legs.get("params", {}).items() if k in self.leg_params})
        self.paused = set(legs.get("paused", [])) & set(self.leg_params)
        super().restore(state, strategy)
        buffers = self.buffers
        self.set_strategy(None)
        self.buffers = buffers


class LegControls:
    """The per-leg controls of a session (mixed into :class:`~workbench.engine.session.Session`): commands
    ``pause_leg``, ``resume_leg`` and ``set_leg_params`` (:mod:`workbench.engine.commands`), each an event
    and kept in the runner state; a session without legs rejects them, naming why."""

    if TYPE_CHECKING:
        trader: Trader

        def _control(self, name: str, actor: str, **args: Any) -> str: ...

    def pause_leg(self, leg: str, actor: str = "user") -> str:
        """No new entries of ``leg``; its positions, exits and stops keep running."""
        return self._control("pause_leg", actor, leg=leg)

    def resume_leg(self, leg: str, actor: str = "user") -> str:
        return self._control("resume_leg", actor, leg=leg)

    def set_leg_params(self, leg: str, params: dict[str, Any], actor: str = "user") -> str:
        """Change one leg's strategy parameters (validated by its strategy) from the next bar."""
        return self._control("set_leg_params", actor, leg=leg, params=params)

    def _legs(self) -> LegTrader:
        if not isinstance(self.trader, LegTrader):
            raise CommandRejected("this session has no legs (config.legs is empty): use pause or set_params")
        return self.trader

    def _do_pause_leg(self, actor: str, leg: str) -> str:
        self._legs().pause_leg(leg)
        return f"leg {leg} paused"

    def _do_resume_leg(self, actor: str, leg: str) -> str:
        self._legs().pause_leg(leg, False)
        return f"leg {leg} resumed"

    def _do_set_leg_params(self, actor: str, leg: str, params: dict[str, Any]) -> str:
        return f"leg {leg} params {self._legs().set_leg_params(leg, params)}"


def make_trader(config: SessionConfig, broker: Broker, *, strategy: Strategy | None = None) -> Trader:
    """The trader of ``config``: a :class:`LegTrader` when it has legs, else a :class:`Trader`."""
    if config.legs:
        return LegTrader(config, broker)
    return Trader(config, broker, strategy=strategy)
