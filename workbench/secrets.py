"""Exchange API keys: from environment variables or the OS keyring, never from a config, the store,
an event, a log line, a notebook output or a report.

Lookup order for exchange ``binance``, account ``main``:

1. ``WORKBENCH_BINANCE_MAIN_API_KEY`` / ``WORKBENCH_BINANCE_MAIN_SECRET`` (``_PASSWORD`` if the exchange needs one)
2. ``WORKBENCH_BINANCE_API_KEY`` / ``WORKBENCH_BINANCE_SECRET``
3. the OS keyring, service ``workbench``, usernames ``binance:main:api_key`` / ``binance:main:secret``
   (set with ``keyring set workbench binance:main:api_key``)

:class:`Credentials` redacts itself in ``repr``/``str`` and refuses to be pickled or JSON-encoded by
accident; pass it only to the broker factory that hands the values to ccxt. Creating one registers its
values with a log-record filter (:func:`register_secret`) so that no log line, ours or a library's,
carries them.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

KEYRING_SERVICE = "workbench"
REDACTED = "***"


_REGISTERED: set[str] = set()
_LOCK = threading.Lock()
_BASE_FACTORY: Any = None


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _BASE_FACTORY(*args, **kwargs)
    secrets = _REGISTERED
    if secrets:
        try:
            text = record.getMessage()
        except Exception:
            return record
        if any(v in text for v in secrets):
            for v in secrets:
                text = text.replace(v, REDACTED)
            record.msg, record.args = text, None
    return record


def register_secret(*values: str) -> None:
    """Redact these strings from every log record made from now on (libraries included: ccxt logs
    request headers, with the API key, at DEBUG level)."""
    global _BASE_FACTORY
    with _LOCK:
        _REGISTERED.update(v for v in values if v and len(v) >= 4)
        if _BASE_FACTORY is None:
            _BASE_FACTORY = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_redacting_factory)


class MissingCredentials(LookupError):
    """No API key/secret was found; the message says where to put them."""


class Credentials:
    """An API key and secret (and optional password) for one exchange account; redacted when shown."""

    __slots__ = ("exchange", "account", "_key", "_secret", "_password")

    def __init__(self, exchange: str, account: str, api_key: str, secret: str, password: str | None = None):
        if not api_key or not secret:
            raise MissingCredentials(f"{exchange}:{account}: the API key and the secret must both be non-empty")
        self.exchange, self.account = exchange, account
        self._key, self._secret, self._password = api_key, secret, password
        register_secret(*self.values())

    def ccxt_config(self) -> dict[str, Any]:
        """The ``apiKey``/``secret``/``password`` entries for a ccxt exchange constructor."""
        out: dict[str, Any] = {"apiKey": self._key, "secret": self._secret}
        if self._password:
            out["password"] = self._password
        return out

    def values(self) -> tuple[str, ...]:
        """The secret strings themselves (for redaction filters)."""
        return tuple(v for v in (self._key, self._secret, self._password) if v)

    def redact(self, text: str) -> str:
        """``text`` with every credential value replaced by ``***``."""
        for v in self.values():
            text = text.replace(v, REDACTED)
        return text

    def __repr__(self) -> str:
        return f"Credentials({self.exchange}:{self.account}, api_key={REDACTED}, secret={REDACTED})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("Credentials are not picklable: load them where they are used (workbench.secrets)")


def _env_name(*parts: str) -> str:
    return "WORKBENCH_" + "_".join(re.sub(r"[^A-Za-z0-9]", "_", p).upper() for p in parts)


def env_names(exchange: str, account: str = "main") -> list[str]:
    """The environment variable names searched for the API key, most specific first."""
    return [_env_name(exchange, account, "API_KEY"), _env_name(exchange, "API_KEY")]


def load_credentials(exchange: str, account: str = "main", *, env: Mapping[str, str] | None = None,
                     use_keyring: bool = True) -> Credentials:
    """Credentials for ``exchange``/``account`` from the environment, else the OS keyring (see module doc).
    Raises :class:`MissingCredentials` naming the variables and keyring entries to set."""
    env = os.environ if env is None else env
    for prefix in ((exchange, account), (exchange,)):
        key, secret = env.get(_env_name(*prefix, "API_KEY")), env.get(_env_name(*prefix, "SECRET"))
        if key and secret:
            return Credentials(exchange, account, key, secret, env.get(_env_name(*prefix, "PASSWORD")))
    if use_keyring:
        try:
            import keyring

            key = keyring.get_password(KEYRING_SERVICE, f"{exchange}:{account}:api_key")
            secret = keyring.get_password(KEYRING_SERVICE, f"{exchange}:{account}:secret")
            password = keyring.get_password(KEYRING_SERVICE, f"{exchange}:{account}:password")
        except Exception:  # no usable keyring backend on this machine
            key = secret = password = None
        if key and secret:
            return Credentials(exchange, account, key, secret, password)
    a, b = _env_name(exchange, account, "API_KEY"), _env_name(exchange, account, "SECRET")
    raise MissingCredentials(
        f"no API key for {exchange}:{account}: set {a} and {b} in the environment, or store them with "
        f"`keyring set {KEYRING_SERVICE} {exchange}:{account}:api_key` (and :secret)")
