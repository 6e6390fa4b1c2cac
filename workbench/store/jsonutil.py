"""JSON for the store's text columns: datetimes, enums, numpy and pandas scalars survive a round trip.

Datetimes are written as ``{"$datetime": "<ISO 8601>"}`` and read back as aware
``datetime`` objects, so runner state such as "last processed bar" comes back as it went in.
"""
from __future__ import annotations

import dataclasses
import json
import math
from datetime import date, datetime
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd

from workbench.domain import as_utc

_DT = "$datetime"


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):  # pd.Timestamp included
        return {_DT: as_utc(obj).isoformat()}
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, pd.Series, pd.Index)):
        return list(obj.tolist())
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, pd.Timedelta):
        return obj.total_seconds()
    raise TypeError(f"cannot store {type(obj).__name__} {obj!r} as JSON")


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _DT in obj:
        return datetime.fromisoformat(obj[_DT])
    return obj


def dumps(obj: Any) -> str:
    """Serialise ``obj`` (datetimes tagged, numpy/pandas scalars unwrapped); TypeError names what failed."""
    return json.dumps(obj, default=_default, separators=(",", ":"))


def loads(text: str | float | None) -> Any:
    """Inverse of :func:`dumps`; ``None`` (or NaN, a missing value in a DataFrame) gives ``None``."""
    if not isinstance(text, str):
        if text is None or math.isnan(text):
            return None
        raise TypeError(f"expected JSON text, got {type(text).__name__}")
    return json.loads(text, object_hook=_hook)
