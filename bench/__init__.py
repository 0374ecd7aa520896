"""Benchmarks: each ``python bench/NAME.py`` prints its figures as ``RESULT {json}`` on its last line."""


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile of ``values``, to 0.1 (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 1)
