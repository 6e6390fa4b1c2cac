"""optimize(cluster=...): the Optuna TPE search's trials run on a real dask.distributed LocalCluster (two
worker processes), stage by stage, pruned between stages; one at a time it is the local search."""
from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("optuna")
distributed = pytest.importorskip("distributed")

from workbench.backtest import optimize as optimize_module  # noqa: E402
from workbench.backtest.optimize import optimize  # noqa: E402
from workbench.backtest.sweep import sweep  # noqa: E402
from workbench.config import make_config  # noqa: E402
from workbench.data import sample_bars  # noqa: E402

SPACE = {"fast": (2, 30), "slow": (10, 120)}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def setup():
    bars = {"BTC/USDT": sample_bars("BTC/USDT", days=2)}
    return make_config(strategy="sma_cross", params={"fast": 5, "slow": 20}, symbols=["BTC/USDT"]), bars


@pytest.mark.slow  # a two-process LocalCluster under load: ~10 s
def test_one_trial_at_a_time_on_the_cluster_is_the_local_search(cluster, setup):
    config, bars = setup
    local = optimize(config, n_trials=8, metric="total_return", space=SPACE, bars=bars, seed=3)
    remote = optimize(config, n_trials=8, metric="total_return", space=SPACE, bars=bars, seed=3,
                      cluster=cluster.scheduler_address, batch=1)
    cols = ["fast", "slow", "state"]
    pd.testing.assert_frame_equal(local.trials[cols], remote.trials[cols])
    done = local.trials["state"] == "COMPLETE"
    assert local.trials.loc[done, "value"].tolist() == pytest.approx(remote.trials.loc[done, "value"].tolist())
    assert remote.params == local.params and remote.value == pytest.approx(local.value)
    assert {"COMPLETE", "PRUNED"} <= set(remote.trials["state"])
    assert not optimize_module._WORKER_STAGES  # the stages ran in the worker processes


@pytest.mark.slow
def test_a_batch_on_the_cluster_suggests_params_whose_metric_is_the_kernels(cluster, setup):
    config, bars = setup
    with distributed.Client(cluster.scheduler_address) as client:
        found = optimize(config, n_trials=10, metric="total_return", space=SPACE, bars=bars, cluster=client)
        assert client.status == "running"  # a Client given is the caller's: left open
    assert len(found.trials) == 10 and "COMPLETE" in set(found.trials["state"])
    again = sweep(config, {k: [found.params[k]] for k in SPACE}, bars=bars, metrics=["total_return"], progress=False)
    assert again.frame["total_return"].iloc[0] == pytest.approx(found.value, rel=1e-9)
    assert config.params == {"fast": 5, "slow": 20}  # a suggestion, never applied


def test_batch_needs_a_cluster(setup):
    config, bars = setup
    with pytest.raises(ValueError, match="give cluster= and a batch"):
        optimize(config, n_trials=2, bars=bars, batch=2)
