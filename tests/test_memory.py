import resource

import numpy as np

from broadcaster.stream.memory import keep_frame_memory


def test_frame_churn_stops_faulting_pages_in() -> None:
    assert keep_frame_memory()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        frame = np.ones((1080, 1280), np.uint8)
        small = [np.zeros(16) for _ in range(20)]
        del frame, small
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 50 * 100, faults
