"""workbench: research and operations workbench for trading sessions."""
from __future__ import annotations

__version__ = "0.1.0"

from workbench.config import ConfigError, SessionConfig, make_config  # noqa: E402

__all__ = ["ConfigError", "SessionConfig", "make_config", "__version__"]
