"""The strategy registry: built-ins plus any class a user registers."""
from __future__ import annotations

from typing import Any

from workbench.strategies.base import Strategy

_REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Register a Strategy subclass under ``cls.name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)) or not cls.name:
        raise TypeError("register() takes a Strategy subclass with a non-empty `name`")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Strategy]:
    """The class registered as ``name``; ValueError naming the known ones otherwise."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def catalog() -> list[dict[str, Any]]:
    """Name, title, description and declared params of every strategy (the wizard shows these)."""
    _load_builtins()
    return [
        {"name": c.name, "title": c.title, "description": c.description, "params": list(c.params)}
        for c in sorted(_REGISTRY.values(), key=lambda c: c.name)
    ]


def create(name: str, params: dict[str, Any] | None = None) -> Strategy:
    return get(name)(**(params or {}))


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    return get(name).validate(dict(params or {}))


def _load_builtins() -> None:
    import workbench.strategies.builtin  # noqa: F401  (registers on import)
