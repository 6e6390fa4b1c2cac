"""What a report records about itself (version, config, data fingerprint, time) and how it keeps secrets out.

A report never includes secrets: values of environment variables whose names look like
``*KEY*``, ``*SECRET*``, ``*TOKEN*``, ``*PASSWORD*`` (and a few spellings), and keys this process
loaded, are replaced by ``***`` wherever they would appear, by :func:`scrub`
(:func:`workbench.secrets.redact`).
"""
from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from workbench.secrets import REDACTED, is_secret_name, redact, redact_obj

MASK = REDACTED
#: the one redaction rule (workbench.secrets): registered secrets and secret-looking environment values
scrub, scrub_obj = redact, redact_obj


def workbench_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``WORKBENCH_*`` settings in effect, secret-looking ones masked."""
    env = os.environ if environ is None else environ
    return {
        k: (MASK if is_secret_name(k) else scrub(v, env))
        for k, v in sorted(env.items())
        if k.startswith("WORKBENCH_")
    }


def bars_fingerprint(bars: pd.DataFrame) -> str:
    """sha256 of a bars frame's times (int64 ns) and OHLCV values (float64), in column order."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(pd.DatetimeIndex(bars.index).as_unit("ns").asi8).tobytes())
    for col in bars.columns:
        h.update(str(col).encode())
        h.update(np.ascontiguousarray(bars[col].to_numpy(dtype="float64")).tobytes())
    return h.hexdigest()


def data_fingerprint(bars: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """sha256 per symbol, plus ``"all"`` over the per-symbol digests in symbol order."""
    per = {sym: bars_fingerprint(df) for sym, df in bars.items()}
    per["all"] = hashlib.sha256("".join(f"{s}={d};" for s, d in per.items()).encode()).hexdigest()
    return per


def provenance(config: Any, bars: Mapping[str, pd.DataFrame], *, now: datetime | None = None) -> dict[str, Any]:
    """Version, config JSON, data fingerprints, environment and time of a report, secrets masked."""
    import workbench

    versions = {"workbench": workbench.__version__, "python": platform.python_version()}
    for mod in ("pandas", "numpy", "vectorbt", "plotly"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001  (a missing optional module is just not recorded)
            continue
    out = {
        "generated_at": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "versions": versions,
        "config": scrub(config.to_json()),
        "data_fingerprint": data_fingerprint(bars),
        "environment": workbench_environment(),
    }
    return scrub_obj(out)
