"""Exchange API keys: from environment variables or the OS keyring, never from a config, the store,
an event, a log line, a notebook output or a report.

Lookup order for exchange ``binance``, account ``main``:

1. ``WORKBENCH_BINANCE_MAIN_API_KEY`` / ``WORKBENCH_BINANCE_MAIN_SECRET`` (``_PASSWORD`` if the exchange needs one)
2. ``WORKBENCH_BINANCE_API_KEY`` / ``WORKBENCH_BINANCE_SECRET``
3. the OS keyring, service ``workbench``, usernames ``binance:main:api_key`` / ``binance:main:secret``
   (set with ``keyring set workbench binance:main:api_key``)

:class:`Credentials` redacts itself in ``repr``/``str`` and refuses to be pickled or JSON-encoded by
accident; pass it only to the broker factory that hands the values to ccxt. Creating one registers its
values (:func:`register_secret`).

:func:`redact` is the one redaction rule: registered values and the values of secret-looking
environment variables (``*KEY*``, ``*SECRET*``, ``*TOKEN*``, ``*PASSWORD*``, ...) become ``***``. It is
applied to every log record (ours and libraries': ccxt logs request headers and URLs), to what the
store writes (event messages and data, tracebacks, a session's error, command results), to report
outputs, and to this process's stdout/stderr once a secret is registered (when they are the
process's own streams, not a notebook's). An exception's text is the usual carrier: ccxt errors
include the request URL, and some exchanges sign with the key in the query string.
"""
from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any

KEYRING_SERVICE = "workbench"
REDACTED = "***"
SECRET_NAME_RE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PRIVATE", re.IGNORECASE)
MIN_SECRET_LEN = 4  # shorter values ("1", "yes") would mask ordinary text


_REGISTERED: set[str] = set()
_LOCK = threading.Lock()
_BASE_FACTORY: Any = None


def is_secret_name(name: str) -> bool:
    """True for names like ``WORKBENCH_BINANCE_API_KEY`` or ``DB_PASSWORD``."""
    return bool(SECRET_NAME_RE.search(name))


_CACHE: tuple[Any, list[str]] = (None, [])  # (os.environ's raw items and the registered count, the values)


def without_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) without its secret-looking variables
    (:func:`is_secret_name`): the environment of a process that must hold no API key nor token (the
    dashboards' Voilà server and its kernels, which never trade live)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in list(env.items()) if not is_secret_name(k)}


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The strings :func:`redact` masks, longest first: registered values, and the values of
    secret-looking variables of ``environ`` (default ``os.environ``; computed again only when it or
    the registered values changed: every log record and store write asks)."""
    global _CACHE
    raw = getattr(os.environ, "_data", None) if environ is None else None
    stamp = (tuple(raw.items()), len(_REGISTERED)) if isinstance(raw, dict) else None
    if stamp is not None and stamp == _CACHE[0]:
        return _CACHE[1]
    env = os.environ if environ is None else environ
    vals = {v for k, v in list(env.items()) if is_secret_name(k) and len(v.strip()) >= MIN_SECRET_LEN}
    with _LOCK:
        out = sorted(vals | _REGISTERED, key=len, reverse=True)
    if stamp is not None:
        _CACHE = (stamp, out)
    return out


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret (:func:`secret_values`) replaced by ``***``: the one redaction rule."""
    if not text:
        return text
    for value in secret_values(environ):
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_obj(obj: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of a JSON-like structure with :func:`redact` applied to every string (keys included)."""
    if isinstance(obj, str):
        return redact(obj, environ)
    if isinstance(obj, Mapping):
        return {redact_obj(k, environ): redact_obj(v, environ) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v, environ) for v in obj]
    return obj


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _BASE_FACTORY(*args, **kwargs)
    try:
        text = record.getMessage()
    except Exception:
        return record
    clean = redact(text)
    if clean != text:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_text is None:  # the traceback, formatted now and redacted
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    return record


class RedactingStream:
    """A text stream that writes through ``stream`` with :func:`redact` applied (a process's stdout
    or stderr: prints, tracebacks of uncaught exceptions, warnings)."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_output() -> None:
    """Redact this process's stdout and stderr from now on, if they are the process's own streams (a
    notebook kernel's and a test runner's are left alone: their output is redacted where it is kept)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if type(stream) is io.TextIOWrapper:
            setattr(sys, name, RedactingStream(stream))


def register_secret(*values: str) -> None:
    """Redact these strings (:func:`redact`) from every log record made from now on (libraries
    included: ccxt logs request headers, with the API key, at DEBUG level), from what the store
    writes and from this process's output (:func:`guard_output`)."""
    global _BASE_FACTORY
    with _LOCK:
        _REGISTERED.update(v for v in values if v and len(v) >= MIN_SECRET_LEN)
        if _BASE_FACTORY is None:
            _BASE_FACTORY = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_redacting_factory)
        guard_output()


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
        """``text`` with every secret replaced by ``***`` (:func:`redact`; this one's values are registered)."""
        return redact(text)

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
