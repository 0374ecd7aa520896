import pytest

from broadcaster.stream.clock import ProgramClock, Timing, VirtualWall


def test_samples_per_tick_is_exact() -> None:
    assert Timing(25).samples_per_tick == 1920
    assert Timing(30).samples_per_tick == 1600
    with pytest.raises(ValueError, match="whole number"):
        Timing(7)


def test_deadlines_come_from_the_tick_number_alone() -> None:
    wall = VirtualWall(100.0)
    clock = ProgramClock(Timing(25), wall)
    clock.start()
    assert clock.due(0) == 100.0
    assert clock.due(25 * 3600 * 24) == pytest.approx(100.0 + 86400.0)
    clock.resync(1000, 500.0)
    assert clock.due(1000) == 500.0
    assert clock.due(1025) == pytest.approx(501.0)
    assert clock.resyncs == 1
