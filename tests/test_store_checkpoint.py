"""Store.save_checkpoint: a runner's batched fills, orders, positions, equity and runner state in one
transaction, fills deduplicated by fill_id (a resumed runner replays bars and re-sends them)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from workbench.config import make_config
from workbench.domain import Fill, Order, OrderStatus, Position, Side
from workbench.store import NotFoundError, Store

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _fill(i: int, side=Side.BUY) -> Fill:
    return Fill(f"o{i}", "BTC/USDT", side, 0.1, 100.0 + i, 0.01, 0.0, T0 + timedelta(minutes=i), fill_id=f"o{i}@{i}")


def test_checkpoint_writes_everything_once_and_replays_are_idempotent(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'wb.db'}")
    sid = store.create_session(make_config(kind="paper"))
    orders = [Order(f"o{i}", "BTC/USDT", Side.BUY, 0.1, status=OrderStatus.FILLED, filled_quantity=0.1,
                    created_at=T0 + timedelta(minutes=i), reason="entry") for i in range(3)]
    pos = Position("BTC/USDT", quantity=0.3, avg_price=101.0, opened_at=T0)
    equity = [(T0 + timedelta(minutes=i), 1000.0 + i, 900.0, 100.0 + i) for i in range(700)]
    n = store.save_checkpoint(sid, {"bars_seen": 700, "last_bar": T0}, fills=[_fill(i) for i in range(3)],
                              orders=orders, positions=[pos], equity=equity)
    assert n == 3 and store.load_runner_state(sid) == {"bars_seen": 700, "last_bar": T0}
    # a replay after a crash re-sends two known fills and a new one, and an updated order
    orders[2].status = OrderStatus.CANCELED
    new = Order("o3", "BTC/USDT", Side.SELL, 0.3, created_at=T0, reason="signal")
    assert store.save_checkpoint(sid, fills=[_fill(1), _fill(2), _fill(3, Side.SELL)], orders=[orders[2], new]) == 1
    assert store.fills(sid).fill_id.tolist() == ["o0@0", "o1@1", "o2@2", "o3@3"]
    assert store.orders(sid).set_index("client_id").status.to_dict() == {
        "o0": "filled", "o1": "filled", "o2": "canceled", "o3": "new"}
    assert store.positions(sid).quantity.tolist() == [0.3] and len(store.equity(sid)) == 700
    assert store.load_runner_state(sid)["bars_seen"] == 700  # no state given: unchanged
    with pytest.raises(ValueError, match="fill_id is empty"):
        store.save_checkpoint(sid, fills=[Fill("x", "BTC/USDT", Side.BUY, 1.0, 1.0, 0.0, 0.0, T0)])
    with pytest.raises(NotFoundError):
        store.save_checkpoint("nope", {"bars_seen": 1}, fills=[_fill(9)])
    assert len(store.fills(sid)) == 4
    store.close()
