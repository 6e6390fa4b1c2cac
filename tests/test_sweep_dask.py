"""sweep(cluster=...) on a real dask.distributed LocalCluster (two worker processes): the same rows
as the local run, by address or by Client."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.backtest.sweep import sweep, walk_forward
from workbench.config import make_config
from workbench.data import sample_bars

distributed = pytest.importorskip("distributed")

GRID = {"window": [10, 30, 60], "entry_threshold": [0.001, 0.003], "exit_threshold": [0.0, 0.002]}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return sample_bars("BTC/USDT", days=6)


@pytest.fixture(scope="module")
def config():
    return make_config(strategy="momentum", symbols=["BTC/USDT"], risk={"stop_loss": 0.02})


def test_cluster_address_gives_the_local_rows(cluster, bars, config):
    local = sweep(config, GRID, bars=bars, progress=False)
    remote = sweep(config, GRID, bars=bars, progress=True, chunk_size=2, cluster=cluster.scheduler_address)
    pd.testing.assert_frame_equal(local.frame, remote.frame)
    assert remote.skipped == local.skipped == 3
    # the chunks really ran in the worker processes, not in this one
    from workbench.backtest import sweep as sweep_module

    assert not sweep_module._WORKER_PREP
    with distributed.Client(cluster.scheduler_address) as client:
        done = client.run(lambda: len(__import__("workbench.backtest.sweep", fromlist=["x"])._WORKER_PREP))
    assert len(done) == 2 and sum(done.values()) >= 1


def test_client_and_multi_symbol(cluster, config):
    frames = {"BTC/USDT": sample_bars("BTC/USDT", days=3), "ETH/USDT": sample_bars("ETH/USDT", days=3)}
    cfg = config.replace(symbols=["BTC/USDT", "ETH/USDT"], sizing={"mode": "percent_equity", "value": 0.5})
    with distributed.Client(cluster) as client:
        remote = sweep(cfg, {"window": [15, 45, 90]}, bars=frames, progress=False, chunk_size=1, cluster=client)
        assert client.status == "running"  # a caller's Client is left open
    local = sweep(cfg, {"window": [15, 45, 90]}, bars=frames, progress=False)
    pd.testing.assert_frame_equal(local.frame, remote.frame)


def test_walk_forward_on_the_cluster(cluster, bars, config):
    grid = {"window": [10, 30], "entry_threshold": [0.002]}
    local = walk_forward(config, grid, splits=2, bars=bars)
    remote = walk_forward(config, grid, splits=2, bars=bars, cluster=cluster.scheduler_address)
    pd.testing.assert_frame_equal(local, remote)


@pytest.mark.parametrize("bad", ["localhost:8786", 8786])
def test_bad_cluster_value_is_explained(bad, bars, config):
    with pytest.raises(ValueError, match=r"Dask scheduler address like 'tcp://"):
        sweep(config, {"window": [10]}, bars=bars, progress=False, cluster=bad)
