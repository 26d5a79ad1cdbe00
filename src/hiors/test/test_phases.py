"""hiors.phases helpers the benchmarks report with."""
import pytest

from hiors.phases import wilson_interval


def test_wilson_interval_brackets_the_rate_and_rejects_impossible_counts():
    lo, hi = wilson_interval(45, 60)
    assert 0.62 < lo < 0.75 < hi < 0.85                # 75% [63, 84]
    assert wilson_interval(0, 16)[0] == 0.0 and wilson_interval(16, 16)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for bad in ((61, 60), (-1, 60)):
        with pytest.raises(ValueError, match='out of'):
            wilson_interval(*bad)
