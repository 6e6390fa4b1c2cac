"""The account risk policy: limits across every session trading an account, in one file.

A policy (YAML or JSON, by default ``$WORKBENCH_HOME/risk-policy.yaml``) names limits per account,
``"*"`` standing for any account without its own entry::

    currency: USDT                # of every amount below (default: the one currency all sessions keep
                                  # their books in, else USDT); other sessions' figures are converted
    accounts:
      main:                       # live sessions' live.account; paper sessions trade the "paper" account
        total_exposure: 20000     # all sessions together
        per_symbol: {"BTC/USDT": 10000, "*": 5000}
        per_sector: {meme: 1000, "*": 12000}
        per_venue: {binance: 15000}
        daily_loss: 800           # realized + unrealized since 00:00 UTC, all sessions together
        min_venue_health: 60      # no entries at a venue scoring below 60 (workbench.account.health)
    sectors: {"PEPE": meme}       # over the bundled map (workbench.account.sectors)

A bad file is refused whole with the field's error (:class:`PolicyError`) and changes nothing:
:func:`save_policy` validates before it replaces the file, atomically.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workbench.config import SessionConfig
from workbench.paths import data_dir

ANY = "*"
PAPER_ACCOUNT = "paper"


class PolicyError(ValueError):
    """A risk policy that cannot be used; the message names the field and what to write instead."""


class AccountLimits(BaseModel):
    """Limits over the sessions of one account (in the policy's currency; ``None`` or absent: no limit)."""

    model_config = ConfigDict(extra="forbid")
    total_exposure: float | None = Field(None, gt=0, description="all positions of the account together")
    per_symbol: dict[str, float] = Field(default_factory=dict, description="symbol or '*' -> largest position")
    per_sector: dict[str, float] = Field(default_factory=dict, description="sector or '*' -> largest exposure")
    per_venue: dict[str, float] = Field(default_factory=dict, description="exchange or '*' -> largest exposure")
    daily_loss: float | None = Field(None, gt=0, description="largest loss of the day across the sessions")
    min_venue_health: float | None = Field(None, ge=0, le=100, description="no new entries at a venue whose "
                                           "health score (workbench.account.health, 0-100) is below this")

    def model_post_init(self, _: Any) -> None:
        for name in ("per_symbol", "per_sector", "per_venue"):
            for key, value in getattr(self, name).items():
                if not (isinstance(value, (int, float)) and value > 0):
                    raise ValueError(f"{name}[{key!r}] must be a positive amount (got {value!r})")

    @property
    def in_money(self) -> bool:
        """Does any limit count money (all but ``min_venue_health``)? Those need every session's figures."""
        return any((self.total_exposure, self.per_symbol, self.per_sector, self.per_venue, self.daily_loss))


class RiskPolicy(BaseModel):
    """Limits per account name (``"*"``: any other account), their currency and the user's sector map."""

    model_config = ConfigDict(extra="forbid")
    currency: str | None = Field(None, description="the currency of every amount "
                                 "(e.g. USDT); default: the one currency all sessions keep their books in, else USDT")
    accounts: dict[str, AccountLimits] = Field(default_factory=dict)
    sectors: dict[str, str] = Field(default_factory=dict, description="symbol or base asset -> sector")

    @field_validator("currency")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z0-9]{2,10}", value):
            raise ValueError(f"must be a currency code in capitals, like USDT or BTC (got {value!r})")
        return value

    def limits_for(self, account: str) -> AccountLimits | None:
        """The account's limits, else the ``"*"`` entry's, else None (no account-wide limit)."""
        return self.accounts.get(account) or self.accounts.get(ANY)


def account_of(config: SessionConfig) -> str:
    """The account a session trades: its ``live.account`` when live, else the shared paper account."""
    return config.live.account if config.kind == "live" else PAPER_ACCOUNT


def venue_of(config: SessionConfig) -> str:
    """Where a session's orders go: its exchange when live, else ``"paper"`` (the simulated broker)."""
    return config.data.exchange if config.kind == "live" else PAPER_ACCOUNT


def policy_path(home: str | Path | None = None) -> Path:
    return Path(home) / "risk-policy.yaml" if home is not None else data_dir() / "risk-policy.yaml"


def parse_policy(data: Any, source: str = "risk policy") -> RiskPolicy:
    """A :class:`RiskPolicy` from parsed YAML/JSON, or :class:`PolicyError` naming the bad field."""
    if data is None:
        return RiskPolicy()
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping with 'accounts' (and optionally 'sectors'), "
                          f"got {type(data).__name__}")
    try:
        return RiskPolicy.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        hint = " (known fields: currency, accounts, sectors; per account: total_exposure, per_symbol, per_sector, " \
               "per_venue, daily_loss, min_venue_health)" if first["type"] == "extra_forbidden" else ""
        raise PolicyError(f"{source}: {where}: {first['msg']}{hint}") from None


def load_policy(path: str | Path | None = None) -> RiskPolicy:
    """The policy in ``path`` (default :func:`policy_path`); no file means no account-wide limits."""
    p = Path(path) if path is not None else policy_path()
    if not p.exists():
        return RiskPolicy()
    text = p.read_text()
    import yaml  # here, not at the top: most processes that import the gate never read a policy file (~1 MB)

    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise PolicyError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
    return parse_policy(data, str(p))


def save_policy(policy: RiskPolicy | dict[str, Any], path: str | Path | None = None) -> RiskPolicy:
    """Validate ``policy`` and replace the file atomically (a bad policy raises and changes nothing)."""
    checked = policy if isinstance(policy, RiskPolicy) else parse_policy(policy)
    p = Path(path) if path is not None else policy_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    import yaml

    text = yaml.safe_dump(checked.model_dump(exclude_defaults=True), sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".risk-policy.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return checked
