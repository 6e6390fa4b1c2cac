"""The store's exceptions that every store module shares (:mod:`.faults` adds ``StorageFault``)."""
from __future__ import annotations


class StoreError(Exception):
    """A store operation could not be done as asked."""


class NotFoundError(StoreError, KeyError):
    """No such session, command or template."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"
