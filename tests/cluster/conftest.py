"""A real two-node Ray cluster on loopback, shared by the session's Ray tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servers import RayCluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """Two Ray nodes (``ray start --head`` and ``ray start --address``), one CPU each.

    The nodes carry the custom resources ``node_a`` and ``node_b``. This process connects
    to the cluster as a driver (through the tests' RayExecutor) and disconnects at the end.
    """
    pytest.importorskip("ray")
    cluster = RayCluster([{"node_a": 1}, {"node_b": 1}]).start()
    yield cluster
    import ray

    ray.shutdown()
    cluster.stop()
