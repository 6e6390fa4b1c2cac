"""The session config itself (:class:`SessionConfig`) and :func:`make_config`."""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from workbench.config.base import ConfigError, _Strategic, currency_of, quote_of
from workbench.config.blocks import (
    CommissionModel,
    DataConfig,
    Depth,
    Latency,
    Leg,
    LiveConfig,
    Margin,
    PositionSizing,
    RiskConfig,
    Scaling,
    SlippageModel,
    TimeRestrictions,
    VolumeRule,
)
from workbench.domain import SessionKind, as_utc


def _same(name: str, given: Any, first: dict[str, Any]) -> bool:
    """Is the top-level ``name`` (strategy or params) given with legs the first leg's?"""
    if name == "strategy" or given == first["params"]:
        return bool(given == first[name])
    from workbench.strategies import registry

    try:
        return bool(registry.validate_params(first["strategy"], given)
                    == registry.validate_params(first["strategy"], first["params"]))
    except (ValueError, TypeError):  # a bad value: the leg's own check names it
        return False


class SessionConfig(_Strategic):
    """Everything that defines a session: kind, strategy, symbols, money, execution and risk."""

    kind: SessionKind = SessionKind.BACKTEST
    name: str = ""
    strategy: str = "momentum"
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT"])
    initial_balance: float = Field(10_000.0, gt=0, le=1e12)
    sizing: PositionSizing = Field(default_factory=PositionSizing)
    commission: CommissionModel = Field(default_factory=CommissionModel)
    slippage: SlippageModel = Field(default_factory=SlippageModel)
    volume: VolumeRule = Field(default_factory=VolumeRule)
    time: TimeRestrictions = Field(default_factory=TimeRestrictions)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    start: datetime | None = None
    end: datetime | None = None
    legs: list[Leg] = Field(default_factory=list, description="several strategies in one session; none: the "
                            "session's own strategy, params and symbols are its one leg")
    scaling: Scaling | None = Field(None, description="automated scaling of the entry size (execution rule 11); "
                                    "None: off, every entry at the configured size")
    latency: Latency | None = Field(None, description="order latency (execution rule 13); None: orders reach the "
                                    "market at their decision")
    depth: Depth | None = Field(None, description="order-book depth (execution rule 14); None: the slippage model")
    direction: Literal["long", "short", "both"] = Field("long", description="the sides the strategy trades "
                                                       "(execution rule 1); 'both' reverses on an opposite signal")
    margin: Margin | None = Field(None, description="leverage, liquidation, borrow interest and funding "
                                  "(execution rule 16); None: cash only, no liquidation")
    base_currency: str | None = Field(None, description="the currency of cash, P&L, "
                                      "fees and equity; None: the symbols' common quote (name one when they differ, "
                                      "e.g. USDT for BTC/USDT with ETH/BTC: ETH/BTC bars are converted with BTC/USDT)")

    @model_validator(mode="before")
    @classmethod
    def _leg_symbols(cls, data: Any) -> Any:
        """With legs, ``symbols`` is the union of the legs' symbols, in order of appearance, and ``strategy``
        and ``params`` are the first leg's (the session's strategy in lists and history)."""
        if isinstance(data, dict) and isinstance(data.get("legs"), list) and data["legs"]:
            legs = [leg.model_dump() if isinstance(leg, Leg) else leg for leg in data["legs"]]
            seen: dict[str, None] = {}
            for leg in legs:
                syms = leg.get("symbols", ["BTC/USDT"]) if isinstance(leg, dict) else None
                for sym in syms if isinstance(syms, list) else []:
                    seen.setdefault(sym, None)
            data = {**data, "symbols": list(seen) or data.get("symbols")}
            if isinstance(legs[0], dict):
                first = {"strategy": legs[0].get("strategy", "momentum"), "params": legs[0].get("params", {})}
                for name in ("strategy", "params"):
                    if name in data and not _same(name, data[name], first):
                        raise ValueError(f"{name}: with legs each leg has its own strategy and params; change "
                                         f"legs.N.{name} (the top-level {name} are the first leg's)")
                data.update(first)
        return data

    @field_validator("legs")
    @classmethod
    def _legs(cls, v: list[Leg], info: ValidationInfo) -> list[Leg]:
        names = [leg.name for leg in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"leg names must be unique; repeated: {', '.join(twice)}")
        total = sum(leg.allocation for leg in v)
        if total > 1 + 1e-9:
            raise ValueError(f"leg allocations sum to {total:g} > 1; scale them down so they share the capital")
        owners: dict[str, list[str]] = {}
        for leg in v:
            for sym in leg.symbols:
                owners.setdefault(sym, []).append(leg.name)
        for sym, names_ in owners.items():  # a symbol several legs trade is stored as SYMBOL@leg (32 characters)
            long = [n for n in names_ if len(names_) > 1 and len(f"{sym}@{n}") > 32]
            if long:
                raise ValueError(f"leg name {long[0]!r} is too long to share {sym} with another leg: "
                                 f"'{sym}@{long[0]}' must fit in 32 characters; shorten the name")
        if info.data.get("kind") == SessionKind.LIVE:  # an exchange nets positions per symbol
            owner: dict[str, str] = {}
            for leg in v:
                for sym in leg.symbols:
                    if sym in owner:
                        raise ValueError(f"legs {owner[sym]!r} and {leg.name!r} both trade {sym}: a live exchange "
                                         "holds one position per symbol; give each symbol to one leg")
                    owner[sym] = leg.name
        return v

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return None if v is None else as_utc(v)

    @field_validator("base_currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[A-Z0-9]{2,12}$", v):
            raise ValueError("base_currency is a currency code in capitals, as in the symbols, e.g. 'USDT'")
        return v

    @model_validator(mode="after")
    def _cross(self) -> SessionConfig:
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end: must be after start; swap the dates or widen the range")
        if self.direction != "long":
            from workbench.strategies import get as get_strategy

            for name in [leg.strategy for leg in self.legs] if self.legs else [self.strategy]:
                if not get_strategy(name).can_short:
                    raise ValueError(f"direction: strategy {name!r} trades long only (its signals have no short "
                                     "side); use direction 'long' or a strategy that can short")
        quotes = sorted({quote_of(s) for s in self.symbols})
        if self.base_currency is None and len(quotes) > 1:
            raise ValueError(f"base_currency: the symbols are quoted in {' and '.join(quotes)}; name the currency "
                             f"of the session's cash and P&L, e.g. base_currency='{quotes[-1]}'")
        if quotes != [self.currency] and (self.kind == SessionKind.LIVE or self.data.live):
            what = "live session" if self.kind == SessionKind.LIVE else "paper session on live data"
            raise ValueError(f"base_currency: a {what} trades in its markets' quote ({' and '.join(quotes)}), not "
                             f"converted into {self.currency}; use symbols quoted in one currency and leave "
                             "base_currency unset")
        return self

    @property
    def currency(self) -> str:
        """The session's base currency (its cash, P&L, fees and equity): ``base_currency``, else the common quote."""
        return currency_of(self.base_currency, self.symbols)

    # ---- serialisation -------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json()

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    @classmethod
    def from_json(cls, text: str) -> SessionConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError([("<json>", text[:40], f"not valid JSON: {e.msg} at line {e.lineno}")]) from None
        return make_config(**data) if isinstance(data, dict) else make_config(_=data)

    def replace(self, **changes: Any) -> SessionConfig:
        """A new validated config with top-level fields changed (new ``legs`` bring their own strategy and params)."""
        base = self.to_dict()
        if "legs" in changes:
            for name in ("strategy", "params"):
                if name not in changes:
                    base.pop(name)
        return make_config(**{**base, **changes})


def _problems(err: ValidationError) -> list[tuple[str, Any, str]]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<config>"
        msg = e["msg"]
        msg = msg.removeprefix("Value error, ")
        if loc == "<config>" and re.match(r"^[a-z_.]+: ", msg):  # model-level check naming its field
            loc, msg = msg.split(": ", 1)
            value = e.get("input")
            out.append((loc, value.get(loc) if isinstance(value, dict) else value, msg))
            continue
        if e["type"] == "extra_forbidden":
            msg = "unknown setting; check the spelling against SessionConfig's fields"
        out.append((loc, e.get("input"), msg))
    return out


def make_config(**fields: Any) -> SessionConfig:
    """Build a SessionConfig, raising ConfigError (never a raw traceback) on bad input."""
    try:
        return SessionConfig(**fields)
    except ValidationError as e:
        raise ConfigError(_problems(e)) from None
    except (TypeError, ValueError) as e:  # e.g. a strategy's own param check
        if isinstance(e, ConfigError):
            raise
        raise ConfigError([("<config>", None, str(e))]) from None
