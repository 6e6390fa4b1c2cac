"""Sectors of crypto assets: a bundled default map by base asset, overridden per symbol or asset.

A symbol's sector is looked up by the symbol itself ("BTC/USDT"), then by its base asset ("BTC"),
in the user's map first (the risk policy's ``sectors``) and then in :data:`DEFAULT_SECTORS`;
anything unknown is ``"other"``. Derivative symbols ("BTC/USDT:USDT") use their base asset too.
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

OTHER = "other"
_GROUPS: dict[str, tuple[str, ...]] = {
    "currency": ("BTC", "WBTC", "LTC", "BCH", "XMR", "ZEC", "DASH"),
    "smart-contract": ("ETH", "SOL", "ADA", "AVAX", "DOT", "TRX", "NEAR", "ATOM", "APT", "SUI", "TON", "ALGO",
                       "ICP", "ETC", "HBAR", "SEI", "INJ", "FTM", "S", "EGLD", "XTZ", "EOS", "KAS"),
    "scaling": ("MATIC", "POL", "ARB", "OP", "IMX", "STRK", "MNT", "ZK", "METIS"),
    "payments": ("XRP", "XLM", "XDC"),
    "defi": ("UNI", "AAVE", "MKR", "CRV", "LDO", "COMP", "SNX", "SUSHI", "1INCH", "CAKE", "DYDX", "JUP", "PENDLE",
             "RUNE", "GMX", "ENA"),
    "oracle-data": ("LINK", "PYTH", "BAND", "API3", "GRT", "FIL", "AR", "RNDR", "RENDER", "TAO", "FET"),
    "exchange": ("BNB", "OKB", "CRO", "KCS", "GT", "LEO", "HT"),
    "meme": ("DOGE", "SHIB", "PEPE", "FLOKI", "BONK", "WIF", "TRUMP", "BOME"),
    "gaming-metaverse": ("SAND", "MANA", "AXS", "GALA", "APE", "ENJ", "ILV"),
    "stablecoin": ("USDT", "USDC", "DAI", "FDUSD", "TUSD", "USDP", "PYUSD", "USDE", "BUSD", "EUR", "EURC"),
}
#: base asset -> sector
DEFAULT_SECTORS: dict[str, str] = {}
for _sector, _assets in _GROUPS.items():
    for _asset in _assets:
        DEFAULT_SECTORS.setdefault(_asset, _sector)


def base_asset(symbol: str) -> str:
    """"BTC/USDT" -> "BTC"; "BTC/USDT:USDT" -> "BTC"; "BTC" -> "BTC"."""
    return symbol.split(":", 1)[0].split("/", 1)[0].strip().upper()


def sector_of(symbol: str, sectors: Mapping[str, str] | None = None) -> str:
    """The sector of ``symbol``: the user's map (by symbol, then base asset), then the bundled one."""
    base = base_asset(symbol)
    for table in (sectors or {}, DEFAULT_SECTORS):
        for key in (symbol, symbol.upper(), base):
            if key in table:
                return table[key]
    return OTHER


def sector_exposure(values: Mapping[str, float], sectors: Mapping[str, str] | None = None) -> pd.Series:
    """Exposure per sector (sum of the symbols' values), largest first."""
    by: dict[str, float] = {}
    for symbol, value in values.items():
        s = sector_of(symbol, sectors)
        by[s] = by.get(s, 0.0) + float(value)
    return pd.Series(by, name="exposure", dtype=float).sort_values(ascending=False)
