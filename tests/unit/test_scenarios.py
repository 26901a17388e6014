"""Drift scenarios of the synthetic workload: nothing changes before the change point,
the intended quantity (and only it) shifts after it."""

from types import SimpleNamespace

import numpy as np
import pytest

from stream.simulator import ClosedLoop
from stream.workload import (COVARIATE_PRICE_FACTOR, DEVICES, EVENT_FIELDS, SCENARIOS, Scenario,
                             Workload)

T0 = 1_700_000_000_000
N = 5000  # events before and after the change point
CHANGE = T0 + N  # rate 1000/s: event i has time T0 + i ms, so the first N events come before the change
KINDS = ["stationary", "sudden", "gradual", "covariate", "concept", "upstream_bug"]


def wl(scenario=None, **kw):
    return Workload(seed=4, users=200, items=2000, categories=20, start_ms=T0, scenario=scenario, **kw)


def pref_scores(g, events):
    """Mean original and mean shifted preference of the browsed categories (events with a category)."""
    evs = [e for e in events if e["category"]]
    orig = np.mean([g.user_prefs(e["user_id"])[int(e["category"][1:])] for e in evs])
    shifted = np.mean([g.shifted_prefs(e["user_id"])[int(e["category"][1:])] for e in evs])
    return orig, shifted


def share(events, pred):
    return sum(map(pred, events)) / len(events)


# --- Scenario ---------------------------------------------------------------------------------

def test_kinds_are_described_and_invalid_ones_rejected():
    assert list(SCENARIOS) == KINDS
    assert all(isinstance(d, str) and d and "\n" not in d for d in SCENARIOS.values())
    with pytest.raises(ValueError, match="unknown scenario kind 'drifty'.*sudden.*upstream_bug"):
        Scenario("drifty")
    with pytest.raises(ValueError, match="span_ms"):
        Scenario("gradual", span_ms=-1)
    with pytest.raises(ValueError, match="unknown event field"):
        Scenario("upstream_bug", field="colour")


@pytest.mark.parametrize("kind", KINDS[1:])
def test_mix_is_zero_before_and_one_after(kind):
    s = Scenario(kind, change_at_ms=CHANGE, span_ms=1000)
    assert s.mix(T0) == s.mix(CHANGE - 1) == 0.0
    assert s.mix(CHANGE + 1000) == s.mix(CHANGE + 10**9) == 1.0
    assert s.mix(CHANGE) == (0.0 if kind == "gradual" else 1.0)
    assert s.midpoint_ms == (CHANGE + 500 if kind == "gradual" else CHANGE)


def test_stationary_never_mixes():
    s = Scenario(change_at_ms=CHANGE)
    assert s.mix(CHANGE) == s.mix(CHANGE + 10**9) == 0.0


def test_gradual_ramps_linearly_and_is_half_way_at_the_midpoint():
    s = Scenario("gradual", change_at_ms=CHANGE, span_ms=2001)  # odd span: the midpoint is not a whole ms
    assert s.midpoint_ms == CHANGE + 1000.5
    assert s.mix(s.midpoint_ms) == 0.5
    assert s.mix(CHANGE + 2001 / 4) == pytest.approx(0.25)
    assert s.mix(CHANGE + 2001) == 1.0


# --- before the change point ------------------------------------------------------------------

def events_and_picks(g, n):
    out = []
    for i in range(n):
        out.append(g.event())
        out.append(g.pick_user())
        out.append(g.event(i % g.users, "purchase"))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_changes_before_the_change_point(kind):
    far = Scenario(kind, change_at_ms=T0 + 10 * N, span_ms=1000)
    assert events_and_picks(wl(far), N) == events_and_picks(wl(), N)
    g = wl(far)
    for u in ("u0", "u7", "u199"):
        assert g.click_prefs(u, T0 + 10 * N - 1) is g.user_prefs(u)


def test_no_scenario_means_original_click_prefs_and_an_explicit_timestamp():
    g = wl()
    assert g.click_prefs("u3", T0 + 10**9) is g.user_prefs("u3")
    assert g.event(at_ms=T0 + 123)["timestamp"] == T0 + 123
    assert g.event(at_ms=None)["timestamp"] == g.now_ms - 1  # the event clock, as before


# --- after the change point -------------------------------------------------------------------

def before_after(scenario):
    g = wl(scenario)
    before = list(g.events(N))
    after = list(g.events(N))
    assert before[-1]["timestamp"] < CHANGE <= after[0]["timestamp"]
    return g, before, after


def test_sudden_switches_browsing_and_clicks():
    g, before, after = before_after(Scenario("sudden", change_at_ms=CHANGE))
    (o0, s0), (o1, s1) = pref_scores(g, before), pref_scores(g, after)
    assert o0 > 2.5 * s0  # before: users browse what they (originally) like
    assert o1 < 0.4 * o0 and s1 > 2.5 * o1  # after: they browse what they like now
    assert s1 == pytest.approx(o0, abs=0.03)
    u = "u5"
    assert np.allclose(g.click_prefs(u, CHANGE), np.roll(g.user_prefs(u), 10))
    assert g.click_prefs(u, CHANGE - 1) is g.user_prefs(u)


def test_gradual_is_half_changed_at_the_midpoint():
    sc = Scenario("gradual", change_at_ms=CHANGE, span_ms=4000)
    g, before, _ = before_after(sc)
    mid = [g.event(at_ms=int(sc.midpoint_ms)) for _ in range(N)]
    assert all(e["timestamp"] == sc.midpoint_ms for e in mid)
    done = [g.event(at_ms=CHANGE + 4000) for _ in range(N)]
    (o0, _), (om, sm), (o1, s1) = pref_scores(g, before), pref_scores(g, mid), pref_scores(g, done)
    assert om == pytest.approx((o0 + o1) / 2, abs=0.02)
    assert sm == pytest.approx(om, abs=0.03)  # half old, half new
    assert o1 < 0.4 * o0 and s1 > 2.5 * o1
    p, s = g.user_prefs("u9"), g.shifted_prefs("u9")
    assert np.allclose(g.click_prefs("u9", sc.midpoint_ms), (p + s) / 2)
    assert np.allclose(g.click_prefs("u9", CHANGE + 1000), 0.75 * p + 0.25 * s)


def test_covariate_shifts_inputs_but_not_preferences():
    g, before, after = before_after(Scenario("covariate", change_at_ms=CHANGE))
    tablet, pl_es = (lambda e: e["device"] == "tablet"), (lambda e: e["country"] in ("PL", "ES"))
    assert share(before, tablet) < 0.5 and share(after, tablet) > 0.7
    assert share(before, pl_es) < 0.4 and share(after, pl_es) > 0.7
    assert {e["device"] for e in after} == set(DEVICES)
    # a new segment: the second half of the users
    assert share(before, lambda e: int(e["user_id"][1:]) >= 100) < 0.8
    assert share(after, lambda e: int(e["user_id"][1:]) >= 100) == 1.0
    # prices are three times the item's list price (in the event only)
    priced = [e for e in after if e["price"] is not None]
    assert len(priced) > 100
    assert all(e["price"] == round(g.item_price[e["item_id"]] * COVARIATE_PRICE_FACTOR, 2) for e in priced)
    assert all(e["price"] == g.item_price[e["item_id"]] for e in before if e["price"] is not None)
    # what users browse follows the same preferences; clicks too
    (o0, s0), (o1, s1) = pref_scores(g, before), pref_scores(g, after)
    assert o1 == pytest.approx(o0, abs=0.03) and s1 == pytest.approx(s0, abs=0.03)
    assert g.click_prefs("u150", CHANGE + 10**6) is g.user_prefs("u150")


def test_covariate_keeps_the_rest_of_each_event():
    """For a given user, only device, country and price differ from a stationary run."""
    sc = Scenario("covariate", change_at_ms=T0)
    a, b = wl(sc), wl()
    changed = {"device", "country", "price"}
    for i in range(2000):
        ea, eb = a.event(i % 200, at_ms=T0 + i), b.event(i % 200, at_ms=T0 + i)
        assert {k: v for k, v in ea.items() if k not in changed} == {k: v for k, v in eb.items() if k not in changed}


def test_concept_changes_clicks_only():
    g, before, after = before_after(Scenario("concept", change_at_ms=CHANGE))
    ref = wl()
    assert before + after == list(ref.events(2 * N))  # browsing (every event) stays as it was
    for u in ("u0", "u42", "u199"):
        p = g.user_prefs(u)
        assert g.click_prefs(u, CHANGE - 1) is p
        after_p = g.click_prefs(u, CHANGE)
        assert np.allclose(after_p, np.roll(p, 10)) and not np.allclose(after_p, p)
        assert after_p.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("fld", ["category", "device"])
def test_upstream_bug_empties_one_field_after_the_change(fld):
    g, before, after = before_after(Scenario("upstream_bug", change_at_ms=CHANGE, field=fld))
    ref = list(wl().events(2 * N))
    assert before == ref[:N]
    had = [e for e in ref[N:] if e[fld] is not None]
    assert len(had) > 0.9 * N
    assert all(e[fld] is None for e in after)  # the full share (mix is 1 after the change)
    assert share(before, lambda e: e[fld] is None) == share(ref[:N], lambda e: e[fld] is None) < 0.1
    for e, r in zip(after, ref[N:]):  # everything else unchanged
        assert {k: v for k, v in e.items() if k != fld} == {k: v for k, v in r.items() if k != fld}
    assert g.click_prefs("u1", CHANGE + 1) is g.user_prefs("u1")


def test_event_fields_match_the_event():
    assert tuple(wl().event()) == EVENT_FIELDS


# --- the simulator's click model --------------------------------------------------------------

def test_simulator_clicks_follow_the_scenario_at_the_given_time():
    g = wl(Scenario("concept", change_at_ms=CHANGE))
    sim = SimpleNamespace(wl=g, click_scale=0.5)
    p, s = g.user_prefs("u3"), g.shifted_prefs("u3")
    c = int(np.argmax(p))
    assert ClosedLoop.p_click(sim, "u3", f"c{c:02d}", CHANGE - 1) == pytest.approx(0.5 * p[c])
    assert ClosedLoop.p_click(sim, "u3", f"c{c:02d}", CHANGE) == pytest.approx(0.5 * s[c])
    assert ClosedLoop.p_click(sim, "u3", None, CHANGE) == 0.0
    # no time given: now (wall clock), long after this change point
    assert ClosedLoop.p_click(sim, "u3", f"c{c:02d}") == pytest.approx(0.5 * s[c])
    plain = SimpleNamespace(wl=wl(), click_scale=0.5)
    assert ClosedLoop.p_click(plain, "u3", f"c{c:02d}") == pytest.approx(0.5 * p[c])
