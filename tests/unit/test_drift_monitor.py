"""The drift monitor: reference, windows, statistics per quantity, alarms with hysteresis,
late events, thresholds (file and calibration), river detectors on the loss."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from stream.config import Settings
from stream.core.drift import calibrate
from stream.core.drift_monitor import DriftConfig, StageDrift, Thresholds, river_detectors
from stream.core.drift_quantities import concept_values, input_values, log_loss, prediction_values, profile_values
from stream.drift_setup import drift_config, drift_thresholds, read_thresholds
from stream.errors import ConfigError

CFG = DriftConfig(window_ms=1000, grace_ms=0, reference_windows=3, min_samples=100)


def clicks(rng: random.Random, start: int, end: int, step: int = 2, categories=("c1", "c2", "c3"),
           weights=(0.6, 0.3, 0.1), price_mu: float = 3.0, category_missing: float = 0.0):
    for t in range(start, end, step):
        cat = None if rng.random() < category_missing else rng.choices(categories, weights)[0]
        yield {"event_id": str(t), "user_id": "u", "event_type": rng.choice(["view", "click"]), "timestamp": t,
               "category": cat, "price": rng.lognormvariate(price_mu, 0.5), "dwell_ms": rng.randint(100, 5000),
               "device": rng.choice(["mobile", "desktop"]), "country": "DE"}


def recommendations(rng: random.Random):
    """rec(t, variant, mu): a Recommendation of 10 items scored around ``mu``."""
    def rec(t: int, variant: str, mu: float) -> dict:
        return {"variant": variant, "created": t,
                "items": [{"score": min(1, max(0, rng.gauss(mu, 0.05))), "category": "c1"} for _ in range(10)]}
    return rec


def feed(d: StageDrift, events) -> None:
    for ev in events:
        d.update(ev, ev["timestamp"])


def alarms(reports: list[dict]) -> set[tuple[str, str]]:
    return {(r["quantity"], r["statistic"]) for r in reports if r["alarm"]}


def test_no_report_until_the_reference_is_taken_then_one_per_quantity_and_statistic():
    d = StageDrift("input", input_values, CFG, Thresholds())
    feed(d, clicks(random.Random(1), 0, 3000))
    reports, alerts = d.close(3000)
    assert reports == [] and alerts == [] and d.reference is not None and d.reference.windows == 3
    feed(d, clicks(random.Random(2), 3000, 4000))
    reports, alerts = d.close(4000)
    keys = {(r["quantity"], r["statistic"]) for r in reports}
    assert ("category", "psi") in keys and ("category", "js") in keys and ("category", "chi2") in keys
    assert ("price", "ks") in keys and ("events", "rate_change") in keys
    assert {r["window_start"] for r in reports} == {3000}
    assert all(r["reference_id"] == d.reference.reference_id for r in reports)
    assert alarms(reports) == set() and alerts == []  # same distribution, fresh sample


def test_a_shifted_category_mix_and_a_shifted_price_alarm_and_nothing_else():
    d = StageDrift("input", input_values, CFG, Thresholds())
    feed(d, clicks(random.Random(1), 0, 3000))
    d.close(3000)
    feed(d, clicks(random.Random(2), 3000, 4000, weights=(0.1, 0.3, 0.6), price_mu=4.0))
    reports, alerts = d.close(4000)
    assert alarms(reports) == {("category", "psi"), ("category", "js"), ("category", "chi2"), ("price", "psi"),
                               ("price", "ks")}
    # chi2 is reported but does not alert by default; the others alert once each
    assert sorted(a["name"] for a in alerts) == ["drift.input.category.js", "drift.input.category.psi",
                                                 "drift.input.price.ks", "drift.input.price.psi"]
    ev = alerts[0]["evidence"]
    assert ev["stage"] == "input" and ev["window_start"] == "3000" and float(ev["value"]) > float(ev["threshold"])


def test_a_field_that_starts_arriving_empty_moves_the_distribution():
    d = StageDrift("input", input_values, CFG, Thresholds())
    feed(d, clicks(random.Random(1), 0, 3000))
    d.close(3000)
    feed(d, clicks(random.Random(2), 3000, 4000, category_missing=0.5))
    reports, _ = d.close(4000)
    assert ("category", "psi") in alarms(reports)
    cat = next(r for r in reports if r["quantity"] == "category" and r["statistic"] == "psi")
    assert cat["sample_size"] == 500  # values plus the missing ones, counted as one more bin


def test_hysteresis_alerts_once_while_drifted_and_clears_below_half_the_threshold():
    d = StageDrift("input", input_values, CFG, Thresholds({"input/category/js": 0.15}))
    feed(d, clicks(random.Random(1), 0, 3000))
    d.close(3000)
    names = []
    for i, w in enumerate([(0.1, 0.3, 0.6), (0.1, 0.3, 0.6), (0.1, 0.3, 0.6), (0.6, 0.3, 0.1)]):
        feed(d, clicks(random.Random(10 + i), 3000 + i * 1000, 4000 + i * 1000, weights=w))
        _, alerts = d.close(4000 + i * 1000)
        names.append(sorted(a["name"] for a in alerts if ".category.js" in a["name"]))
    assert names == [["drift.input.category.js"], [], [], ["drift.input.category.js.cleared"]]


def test_late_events_are_counted_in_the_next_report_not_dropped_silently():
    d = StageDrift("input", input_values, CFG, Thresholds())
    feed(d, clicks(random.Random(1), 0, 4000))
    d.close(4000)
    assert d.update({"event_type": "view", "timestamp": 500}, 500) is False
    feed(d, clicks(random.Random(2), 4000, 5000))
    reports, _ = d.close(5000)
    assert {r["late_events"] for r in reports} == {1}


def test_a_small_window_is_reported_but_never_alarms():
    d = StageDrift("input", input_values, CFG, Thresholds())
    feed(d, clicks(random.Random(1), 0, 3000))
    d.close(3000)
    feed(d, clicks(random.Random(2), 3000, 4000, step=20, weights=(0.0, 0.0, 1.0)))  # 50 events
    reports, alerts = d.close(4000)
    cat = next(r for r in reports if r["quantity"] == "category" and r["statistic"] == "psi")
    assert cat["value"] > 1 and not cat["alarm"]
    assert [a["name"] for a in alerts] == ["drift.input.events.rate_change"]  # the rate itself fell 20x


def test_reset_reference_takes_the_next_windows_as_the_new_reference():
    d = StageDrift("input", input_values, CFG, Thresholds())
    feed(d, clicks(random.Random(1), 0, 3000))
    d.close(3000)
    old = d.reference.reference_id
    d.reset_reference()
    feed(d, clicks(random.Random(2), 3000, 6000, weights=(0.1, 0.3, 0.6)))
    assert d.close(6000) == ([], [])
    feed(d, clicks(random.Random(3), 6000, 7000, weights=(0.1, 0.3, 0.6)))
    reports, _ = d.close(7000)
    assert d.reference.reference_id != old and alarms(reports) == set()


def test_variants_are_watched_separately_in_predictions():
    d = StageDrift("predictions", prediction_values, CFG, Thresholds())
    rec = recommendations(random.Random(0))
    for t in range(0, 3000, 20):
        d.update(rec(t, "champion", 0.2), t)
        d.update(rec(t, "challenger", 0.2), t)
    d.close(3000)
    for t in range(3000, 4000, 20):
        d.update(rec(t, "champion", 0.2), t)
        d.update(rec(t, "challenger", 0.5), t)
    reports, _ = d.close(4000)
    # top_score has one value per list (50 < min_samples): reported, not alarmed
    assert {q for q, _ in alarms(reports)} == {"score[challenger]"}
    assert {r["quantity"] for r in reports} >= {"score[champion]", "top_score[challenger]", "list_length[champion]"}


def test_profile_and_concept_quantities():
    p = {"counts": {"view": 6, "click": 3, "purchase": 1}, "affinity": {"c1": 3.0, "c2": 1.0}}
    vals = {name: v for name, _, v in profile_values(p)}
    assert vals == {"click_share": 0.3, "add_to_cart_share": 0.0, "purchase_share": 0.1, "top_category": "c1",
                    "affinity_top_share": 0.75}
    fb = {"variant": "challenger", "score": 0.8, "label": 1}
    assert list(concept_values(fb)) == [("log_loss[challenger]", "numeric", pytest.approx(0.2231, abs=1e-4)),
                                        ("label[challenger]", "categorical", "click")]
    assert log_loss(0.0, 1) == pytest.approx(13.8155, abs=1e-3)  # clipped, never infinite


def test_river_detectors_fire_on_a_rising_loss_and_stay_quiet_on_a_stationary_one():
    rng = random.Random(0)

    def run(shift: bool) -> dict[str, int]:
        d = StageDrift("concept", concept_values, CFG, Thresholds(), detectors=river_detectors())
        total = {"adwin": 0, "page_hinkley": 0}
        for t in range(0, 12000, 2):
            p_click = 0.3 if shift and t >= 8000 else 0.1
            d.update({"variant": "champion", "score": 0.1, "label": int(rng.random() < p_click), "served_at": t}, t)
            for r in d.close(t)[0]:
                if r["statistic"] in total:
                    total[r["statistic"]] += int(r["value"])
        return total
    quiet, drifted = run(False), run(True)
    assert quiet == {"adwin": 0, "page_hinkley": 0}
    assert drifted["adwin"] >= 1 and drifted["page_hinkley"] >= 1


def test_thresholds_fall_back_from_quantity_to_stage_to_statistic(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("thresholds:\n  input/price/psi: {threshold: 0.05}\n  concept/log_loss/ks: 0.3\n")
    s = Settings.load(env={"STREAM_DRIFT_THRESHOLDS_FILE": str(f), "STREAM_DRIFT_JS": "0.2"})
    t = drift_thresholds(s)
    assert t.get("input", "price", "psi") == 0.05 and t.get("concept", "log_loss[challenger]", "ks") == 0.3
    assert t.get("input", "category", "js") == 0.2 and t.get("input", "category", "psi") == 0.25
    assert drift_config(s).window_ms == 5000


@pytest.mark.parametrize("text, message", [
    ("nope: 1\n", "expected a 'thresholds' mapping"),
    ("thresholds:\n  input/price/nope: 1\n", "bad key 'input/price/nope'"),
    ("thresholds:\n  input/price/psi: high\n", "not a number"),
    ("thresholds: [\n", "not valid YAML"),
])
def test_a_bad_thresholds_file_is_a_clear_error(tmp_path, text, message):
    f = tmp_path / "t.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        read_thresholds(f)


def test_an_unknown_alerting_statistic_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown statistic"):
        drift_config(Settings.load(env={"STREAM_DRIFT_ALERTING": "psi,bogus"}))


def test_calibration_sets_thresholds_above_the_stationary_values_and_merges_variants():
    rng = random.Random(0)
    values = {("predictions", "score[champion]", "ks"): [abs(rng.gauss(0.05, 0.01)) for _ in range(60)],
              ("predictions", "score[challenger]", "ks"): [abs(rng.gauss(0.05, 0.01)) for _ in range(60)],
              ("input", "category", "psi"): [abs(rng.gauss(0.1, 0.03)) for _ in range(60)]}
    table = calibrate(values, target_run_windows=1000)
    assert set(table) == {"predictions/score/ks", "input/category/psi"}
    assert table["predictions/score/ks"]["windows"] == 120
    for key, e in table.items():
        assert e["threshold"] > e["max"] and e["alpha"] == pytest.approx(1 / 2000)
    # never below the statistic's floor, whatever the stationary run showed
    assert calibrate({("predictions", "list_length", "ks"): [0.0] * 50}, 1000)["predictions/list_length/ks"][
        "threshold"] == 0.05
    assert calibrate({("concept", "log_loss", "adwin"): [0, 0, 2, 0] * 10}, 1000)["concept/log_loss/adwin"][
        "threshold"] == 2.5
    # a longer target run (rarer false alarms) gives a higher threshold
    assert calibrate(values, 10_000)["input/category/psi"]["threshold"] > table["input/category/psi"]["threshold"]


def test_the_stage_watermark_waits_for_the_slowest_partition_unless_it_is_idle():
    from stream.core.ingest import IngestConfig
    from stream.serde import SchemaRegistry
    from stream.stages.drift import DriftStage
    now = [1_000.0]
    reg = SchemaRegistry.default()
    stage = DriftStage(CFG, Thresholds(), IngestConfig(max_skew_s=1e9), reg, out=None, idle_close_s=5,
                       clock=lambda: now[0])

    def send(partition: int, ts: int) -> None:
        ev = {"event_id": f"e{partition}{ts}", "user_id": "u1", "event_type": "view", "timestamp": ts,
              "session_id": None, "item_id": "i1", "category": "c1", "price": None, "dwell_ms": None,
              "device": None, "country": None, "rec_id": None}
        stage.handle("clicks.v1", reg.encode_click(ev), None, partition)
    send(0, 9_000)
    send(1, 3_000)  # partition 1 is behind: windows up to 3 s only
    assert stage.watermark("input", now[0]) == 3_000
    now[0] += 6  # partition 1 idle for longer than idle_close_s: partition 0 alone decides
    send(0, 10_000)
    assert stage.watermark("input", now[0]) == 10_000
    now[0] += 6  # everything idle: the wall clock minus idle_close_s
    assert stage.watermark("input", now[0]) == int((now[0] - 5) * 1000)


def test_a_quantity_that_appears_after_the_reference_gets_its_own_and_then_alarms():
    """A canary starts after the drift reference: the challenger's first windows become its reference."""
    d = StageDrift("predictions", prediction_values, CFG, Thresholds())
    rec = recommendations(random.Random(0))
    for t in range(0, 3000, 20):
        d.update(rec(t, "champion", 0.2), t)
    d.close(3000)
    for t in range(3000, 6000, 20):  # the canary starts: 3 windows of its own reference
        d.update(rec(t, "champion", 0.2), t)
        d.update(rec(t, "challenger", 0.3), t)
    reports, _ = d.close(6000)
    assert "score[challenger]" not in {r["quantity"] for r in reports}
    assert "score[challenger]" in d.reference.numeric
    for t in range(6000, 7000, 20):
        d.update(rec(t, "champion", 0.2), t)
        d.update(rec(t, "challenger", 0.6), t)
    reports, alerts = d.close(7000)
    assert {q for q, _ in alarms(reports)} == {"score[challenger]"}
    assert "drift.predictions.score[challenger].psi" in {a["name"] for a in alerts}


def test_windows_opened_under_a_reset_reference_do_not_form_the_new_one():
    d = StageDrift("input", input_values, CFG, Thresholds())
    feed(d, clicks(random.Random(1), 0, 3000))
    d.close(3000)
    feed(d, clicks(random.Random(2), 3000, 3500))  # a window opened under the old reference (bins) ...
    d.reset_reference()
    feed(d, clicks(random.Random(3), 3500, 7000))
    d.close(7000)  # ... is left out: the new reference is 4000-7000 and has real bins for price
    edges, counts, _, n = d.reference.numeric["price"]
    assert len(edges) >= 5 and n > 1000 and d.reference.windows == 3


def test_uncalibrated_thresholds_report_the_drift_but_raise_no_alarm():
    def run(thresholds):
        d = StageDrift("input", input_values, DriftConfig(window_ms=1000, reference_windows=2, min_samples=10),
                       thresholds)
        for t in range(0, 3000, 10):
            d.update({"event_type": "view", "category": "c1" if t % 20 else "c2", "timestamp": t}, t)
        for t in range(3000, 4000, 10):  # the category goes missing: a drift any threshold sees
            d.update({"event_type": "view", "category": None, "timestamp": t}, t)
        return d.close(5000)
    reports, alerts = run(Thresholds(calibrated=False))
    moved = [r for r in reports if r["quantity"] == "category" and r["statistic"] == "psi" and r["value"] > 1]
    assert moved and not any(r["alarm"] for r in reports) and alerts == []
    assert all(r["calibrated"] is False for r in reports)
    reports, alerts = run(Thresholds())
    assert any(r["alarm"] for r in reports) and alerts and all(r["calibrated"] for r in reports)


def test_the_drift_worker_alarms_only_once_calibrated_unless_told_otherwise(tmp_path):
    from stream.drift_cli import drift_status
    f = tmp_path / "t.yaml"
    f.write_text("thresholds:\n  input/*/psi: 0.4\n")
    assert drift_thresholds(Settings.load(env={})).calibrated is False
    assert drift_status(Settings.load(env={}))["state"] == "calibrating"
    calibrated = Settings.load(env={"STREAM_DRIFT_THRESHOLDS_FILE": str(f)})
    assert drift_thresholds(calibrated).calibrated and drift_status(calibrated)["thresholds"] == 1
    told = Settings.load(env={"STREAM_DRIFT_REQUIRE_CALIBRATION": "false"})
    assert drift_thresholds(told).calibrated and drift_status(told)["state"] == "uncalibrated"


def test_upper_tail_calibration_holds_its_false_alarm_rate_and_ignores_the_bulk_near_zero():
    rng = np.random.default_rng(1)
    # many windows near zero (a quiet concept statistic) and a light right tail
    def draw(n):
        return np.where(rng.random(n) < 0.7, rng.exponential(1e-4, n), rng.gamma(2.0, 0.01, n))
    # a target rarer than the calibration run can show: the tail fit extrapolates
    table = calibrate({("concept", "log_loss", "psi"): draw(3000).tolist()}, target_run_windows=20_000)
    e = table["concept/log_loss/psi"]
    fresh = draw(1_000_000)
    rate = float((fresh > e["threshold"]).mean())
    assert e["alpha"] / 3 < rate < e["alpha"] * 3, (rate, e)  # the target rate, within a factor 3
    assert e["threshold"] < 2 * e["max"], e  # not a multiple of the largest value seen


def _slow_then_sudden(d: StageDrift, rng: random.Random, slow: int, sudden: int) -> list[list[dict]]:
    """Windows of 500 events whose category mix moves slowly (c1 from 0.6 to ~0.2 over ``slow``
    windows, then held), then ``sudden`` windows where the category arrives empty; the alarm
    reports (category psi) of every window after the reference."""
    out = []
    for k in range(3 + slow + sudden):
        s = min(k, 3 + slow) / (3 + slow)
        w1 = 0.6 - 0.4 * s if k >= 3 else 0.6
        missing = 1.0 if k >= 3 + slow else 0.0
        feed(d, clicks(rng, k * 1000, (k + 1) * 1000, weights=(w1, 0.3, 0.7 - w1), category_missing=missing))
        reports, _ = d.close((k + 1) * 1000)
        if k >= 3:
            out.append([r for r in reports if r["quantity"] == "category" and r["statistic"] == "psi"])
    return out


def test_a_trailing_reference_follows_slow_evolution_but_not_a_change_and_keeps_alarming_on_it():
    th = Thresholds({"psi": 0.2})
    fixed = _slow_then_sudden(StageDrift("input", input_values, CFG, th), random.Random(4), 30, 6)
    trailing = _slow_then_sudden(StageDrift("input", input_values, replace(CFG, trailing=3), th),
                                 random.Random(4), 30, 6)
    slow_fixed = sum(r[0]["alarm"] for r in fixed[:30])
    slow_trailing = sum(r[0]["alarm"] for r in trailing[:30])
    assert slow_fixed >= 10 and slow_trailing == 0  # the fixed reference alarms on the drift of many windows
    # the break alarms at once and goes on alarming: drifted windows never enter the reference
    assert all(r[0]["alarm"] for r in trailing[30:]) and all(r[0]["alarm"] for r in fixed[30:])


def test_a_trailing_reference_follows_the_event_rate_too():
    d = StageDrift("input", input_values, replace(CFG, trailing=2), Thresholds({"rate_change": 0.5}))
    rng, t, rates = random.Random(5), 0, [2] * 3 + [2, 2, 3, 3, 3, 4, 4, 4] + [40]
    alarmed = []
    for step in rates:  # the step between events: 500, then 333, 250 events per window; then 25
        feed(d, clicks(rng, t, t + 1000, step=step))
        t += 1000
        reports, _ = d.close(t)
        alarmed += [r["alarm"] for r in reports if r["quantity"] == "events"]
    assert alarmed == [False] * 8 + [True]
