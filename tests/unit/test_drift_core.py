"""Drift statistics against scipy on the same data; summaries merge; windows; hysteresis."""

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from stream.core.drift import (CategoricalSummary, Hysteresis, NumericSummary, TumblingWindows, chi2,
                               js_distance, ks, psi)

RNG = np.random.default_rng(7)


def counts(values, edges):
    s = NumericSummary(edges)
    for v in values:
        s.update(float(v))
    return s


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_js_and_chi2_equal_scipy(shift):
    edges = list(np.linspace(-2, 2, 9))
    a, b = counts(RNG.normal(0, 1, 3000), edges), counts(RNG.normal(shift, 1, 2000), edges)
    assert js_distance(a.counts, b.counts) == pytest.approx(jensenshannon(a.counts, b.counts, base=2), abs=1e-12)
    stat, p = chi2(a.counts, b.counts)
    ref = stats.chi2_contingency(np.array([a.counts, b.counts]), correction=False)
    assert stat == pytest.approx(ref[0], rel=1e-9) and p == pytest.approx(ref[1], rel=1e-6, abs=1e-300)


def test_ks_on_bins_equals_scipy_on_the_binned_data():
    edges = [0.5, 1.5, 2.5, 3.5]
    x, y = RNG.integers(0, 5, 4000), RNG.integers(1, 5, 3000)  # integer data: the bins are exact
    a, b = counts(x, edges), counts(y, edges)
    assert ks(a.counts, b.counts) == pytest.approx(stats.ks_2samp(x, y).statistic, abs=1e-12)


def test_psi_matches_its_formula_and_grows_with_the_shift():
    p, q = [100, 200, 300, 400], [400, 300, 200, 100]
    pp, qq = np.array(p) / 1000, np.array(q) / 1000
    assert psi(p, q) == pytest.approx(float(np.sum((qq - pp) * np.log(qq / pp))))
    assert psi(p, p) == 0.0
    edges = list(np.linspace(-2, 2, 9))
    ref = counts(RNG.normal(0, 1, 5000), edges).counts
    values = [psi(ref, counts(RNG.normal(s, 1, 5000), edges).counts) for s in (0.0, 0.2, 0.5, 1.0)]
    assert values == sorted(values) and values[0] < 0.02 and values[-1] > 0.5


def test_chi2_p_value_against_scipy_across_degrees_of_freedom():
    for k in (1, 2, 5, 30, 120):
        for x in (0.5, k, 3 * k + 10):
            assert chi2_sf_ok(x, k)


def chi2_sf_ok(x, k):
    from stream.core.drift import _chi2_sf
    return _chi2_sf(x, k) == pytest.approx(stats.chi2.sf(x, k), rel=1e-7, abs=1e-300)


def test_numeric_summaries_merge_by_adding_counts():
    edges = [0.0, 1.0, 2.0]
    data = RNG.normal(1, 1, 1000)
    whole = counts(data, edges)
    parts = [counts(data[:300], edges), counts(data[300:], edges)]
    merged = parts[0].merge(parts[1])
    assert merged.counts == whole.counts and merged.n == whole.n == 1000
    with pytest.raises(ValueError):
        merged.merge(NumericSummary([0.0, 5.0]))


def test_reference_bins_are_equal_mass_and_missing_values_are_counted():
    s = NumericSummary.from_reference(list(RNG.exponential(1, 10_000)), bins=10)
    for v in RNG.exponential(1, 10_000):
        s.update(float(v))
    s.update(None)
    s.update(float("nan"))
    assert len(s.counts) == 10 and s.missing == 2
    assert max(s.counts) / min(s.counts) < 1.3


def test_categorical_summary_caps_names_and_merges():
    a, b = CategoricalSummary(max_categories=2), CategoricalSummary(max_categories=2)
    for v in ["x", "y", "z", "x", None, ""]:
        a.update(v)
    for v in ["x", "w"]:
        b.update(v)
    assert a.counts == {"x": 2, "y": 1, "__other__": 1} and a.missing == 2
    a.merge(b)
    assert a.counts == {"x": 3, "y": 1, "__other__": 1, "w": 1}
    ref, cur = a.aligned(b)
    assert len(ref) == len(cur) == 4


def test_windows_close_after_grace_and_count_late_events():
    w = TumblingWindows(size_ms=60_000, grace_ms=5_000)
    assert w.assign(10_000) == 0 and w.assign(70_000) == 60_000
    assert w.close(64_999) == [] and w.close(65_000) == [0]
    assert w.assign(59_999) is None and w.late == 1  # its window is closed: late, counted
    assert w.assign(61_000) == 60_000


def test_hysteresis_does_not_flap():
    h = Hysteresis(threshold=0.2, clear=0.5)
    flapping = [0.21, 0.19, 0.21, 0.19, 0.21]
    assert [h.update(v) for v in flapping] == [True] * 5  # stays on: no alert per window
    assert h.update(0.05) is False


def test_calibration_on_a_few_windows_extrapolates_its_tail_instead_of_taking_the_max():
    import math as _m

    from stream.core.drift import calibrate
    rng = np.random.default_rng(3)
    rates = []
    for _ in range(300):  # six stationary windows of an exponential statistic, one key, alpha 1e-4
        values = list(rng.exponential(1.0, 6))
        t = calibrate({("input", "country", "js"): values}, target_run_windows=10_000)["input/country/js"]
        assert t["threshold"] > 2 * max(values)
        rates.append((_m.exp(-t["threshold"]), _m.exp(-max(values))))  # P(a fresh value crosses it)
    fitted, max_only = (sum(r[k] for r in rates) / len(rates) for k in (0, 1))
    # the max alone is about the 6/7 quantile: a false alarm every ~7 windows. The fit on six values
    # is ~40x the target of 1e-4 (measured 0.0043) but 30x fewer false alarms than the max
    assert max_only > 0.1 and fitted < 0.01
