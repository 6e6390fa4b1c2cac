"""Strategies: a base with declared parameters, built-ins, and a registry."""
from workbench.strategies.base import ArrayStrategy, BarWindow, Param, Strategy
from workbench.strategies.registry import catalog, create, get, names, register

__all__ = ["ArrayStrategy", "BarWindow", "Param", "Strategy", "catalog", "create", "get", "names", "register"]
