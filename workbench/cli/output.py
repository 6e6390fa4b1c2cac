"""What the commands print: JSON documents (``--json``) made of plain values, one rule for every command."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

import pandas as pd


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: non-finite floats as null/"inf"/"-inf", numpy scalars as Python numbers,
    times as ISO 8601 text, enums by value, frames as lists of records; containers converted deeply."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return records(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as JSON-ready dicts (missing values null)."""
    return [jsonable(dict(zip(frame.columns, row))) for row in frame.itertuples(index=False)]


def dumps(doc: Any, *, lines: bool = False) -> str:
    """One JSON document (indented), or one compact line (JSON lines) with ``lines``."""
    return json.dumps(jsonable(doc), default=str, indent=None if lines else 2)
