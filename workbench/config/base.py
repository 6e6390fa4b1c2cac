"""What every config block shares: symbol names, the error a rejected config raises, the base model
and the checks of a strategy, its params and symbols."""
from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,12}/[A-Z0-9]{2,12}(:[A-Z0-9]{2,12})?$")  # ccxt's: BASE/QUOTE[:SETTLE]
HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")


def quote_of(symbol: str) -> str:
    """The quote currency of ``BASE/QUOTE`` (``USDT`` for ``BTC/USDT``): the currency its prices are in."""
    return symbol.split("/")[1].split(":")[0]


def base_of(symbol: str) -> str:
    """The base asset of ``BASE/QUOTE[:SETTLE]`` (``BTC`` for ``BTC/USDT`` and ``BTC/USDT:USDT``)."""
    return symbol.split("/")[0]


def is_perp(symbol: str) -> bool:
    """Is ``symbol`` a perpetual swap? ccxt names them ``BASE/QUOTE:SETTLE`` (``BTC/USDT:USDT``, Binance's
    USDⓈ-M BTCUSDT perpetual); spot markets are ``BASE/QUOTE``."""
    return ":" in symbol


def currency_of(base_currency: str | None, symbols: list[str]) -> str:
    """A session's base currency (its cash, P&L, fees and equity): ``base_currency``, else the quote of
    its symbols (the config insists they share one when ``base_currency`` is not given)."""
    return base_currency or quote_of(symbols[0])


class ConfigError(ValueError):
    """A config was rejected. ``problems`` lists ``(field, value, message)``, one per fault."""

    def __init__(self, problems: list[tuple[str, Any, str]]):
        self.problems = problems
        lines = [f"{f}: {msg} (got {v!r})" for f, v, msg in problems]
        super().__init__("invalid session config:\n  " + "\n  ".join(lines))

    def by_field(self) -> dict[str, str]:
        """Messages keyed by dotted field name, for showing beside a form field."""
        out: dict[str, str] = {}
        for f, v, msg in self.problems:
            out.setdefault(f, f"{msg} (got {v!r})")
        return out


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class _Strategic(_Model):
    """The checks of a model's ``strategy``, ``params`` and ``symbols`` (a session's, or one of its legs'),
    once: each model declares the fields itself, where its field order wants them."""

    @field_validator("strategy", check_fields=False)
    @classmethod
    def _strategy(cls, v: str) -> str:
        from workbench.strategies import registry  # lazy: strategies sit above config

        registry.get(v)  # raises ValueError naming the known strategies
        return v

    @field_validator("params", check_fields=False)
    @classmethod
    def _params(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from workbench.strategies import registry

        if "strategy" not in info.data:  # the strategy itself was rejected
            return v
        return registry.validate_params(info.data["strategy"], v)

    @field_validator("symbols", check_fields=False)
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one symbol, e.g. ['BTC/USDT']")
        for sym in v:
            if not isinstance(sym, str) or not SYMBOL_RE.match(sym):
                raise ValueError(f"symbol {sym!r} is not BASE/QUOTE in capitals, e.g. 'BTC/USDT' (a perpetual: "
                                 "BASE/QUOTE:SETTLE, e.g. 'BTC/USDT:USDT')")
        if len(set(v)) != len(v):
            raise ValueError("symbols are listed more than once")
        return v
