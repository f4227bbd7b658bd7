import pytest

from alllib import bench


def test_pipeline_overhead_pools_rounds_and_reports_their_spread():
    pipeline = [[1.0, 1.1, 5.0], [1.2, 1.2, 1.2]]  # a stalled step in round 1 does not move its median
    memory = [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    got = bench.overhead(pipeline, memory)
    # by hand: round medians 1.1 and 1.2 against 1.0; the six pooled periods have median (1.2 + 1.2) / 2
    assert got["lowest"] == pytest.approx(10.0)
    assert got["highest"] == pytest.approx(20.0)
    assert got["overall"] == pytest.approx(20.0)
    assert got["pipeline_s"] == pytest.approx(1.2) and got["memory_s"] == pytest.approx(1.0)
    assert bench.overhead([[0.9, 0.9]], [[1.0, 1.0]])["overall"] == pytest.approx(-10.0)  # faster than in-memory: noise
