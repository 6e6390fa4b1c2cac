"""Strategies: a base with declared parameters, built-ins, and a registry."""
from workbench.strategies.base import Param, Strategy
from workbench.strategies.registry import catalog, create, get, names, register

__all__ = ["Param", "Strategy", "catalog", "create", "get", "names", "register"]
