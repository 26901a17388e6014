"""`stream top`'s board: latest record per (stage, worker), sums over workers, unknown lag
kept out of sums, stale workers dropped, model/rollout/drift read from the stage gauges."""

import io

from stream.top import Board, render, run


def rec(stage, worker, at, **kw):
    r = {"stage": stage, "worker": worker, "emitted_at": at, "interval_s": 5.0, "events_in": 0, "events_out": 0,
         "rejected": 0, "processing_ms": {}, "event_lag_ms": {}, "consumer_lag": -1, "outputs": {}}
    r.update(kw)
    return r


def test_two_workers_sum_rates_and_known_lag_only():
    b = Board()
    b.add(rec("ingest", "w1", 10_000, events_in=5000, outputs={"consumer_lag_events": 100.0, "ready": 1.0},
              processing_ms={"p99": 3.0}))
    b.add(rec("ingest", "w2", 10_500, events_in=2500, outputs={"consumer_lag_events": -1.0, "ready": 0.0},
              processing_ms={"p99": 9.0}))
    b.add(rec("ingest", "w1", 5_000, events_in=99_999))  # older than w1's latest: ignored
    (row,) = b.stages(now_ms=11_000)
    assert row["workers"] == 2 and row["in_per_s"] == 1500.0
    assert row["lag_events"] == 100 and row["lag_unknown"] == 1
    assert row["p99_ms_per_message"] == 9.0 and row["ready"] == 1
    assert "100?" in render(b.snapshot(11_000))  # unknown lag is flagged, not summed


def test_a_stopped_worker_drops_out_and_stages_keep_pipeline_order():
    b = Board()
    b.add(rec("profile", "w1", 100_000))
    b.add(rec("ingest", "w1", 100_000))
    b.add(rec("ingest", "gone", 70_000))
    rows = b.stages(now_ms=101_000)
    assert [r["stage"] for r in rows] == ["ingest", "profile"] and rows[0]["workers"] == 1


def test_model_rollout_and_drift_come_from_their_stage_gauges():
    b = Board()
    b.add(rec("learn", "l1", 1_000, outputs={"model_version": 7.0, "model_log_loss|traffic=champion": 0.41,
                                              "model_ctr|traffic=champion": 0.2, "model_auc|traffic=challenger": 0.7}))
    b.add(rec("rollout", "l1", 1_000, outputs={"rollout_mode": 2.0, "rollout_share": 0.25}))
    b.add(rec("drift", "d1", 1_000, outputs={"alarms_active": 2.0, "drift_calibrated": 0.0}))
    snap = b.snapshot(2_000)
    assert snap["model_version"] == 7 and snap["model"]["champion"] == {"log_loss": 0.41, "ctr": 0.2}
    assert snap["model"]["challenger"] == {"auc": 0.7}
    assert snap["rollout"] == {"mode": "canary", "share": 0.25}
    assert snap["drift"] == {"alarms_active": 2, "calibrated": False}
    text = render(snap)
    assert "champion model v7" in text and "canary, challenger share 25%" in text and "calibrating" in text


def test_live_mode_redraws_and_once_prints_one_table():
    out = io.StringIO()
    ticks = iter(range(100, 200))
    run([rec("ingest", "w1", 100_000), None, rec("ingest", "w1", 105_000)], once=False, refresh_s=1.0, out=out,
        clock=lambda: next(ticks))
    assert out.getvalue().count("\x1b[H\x1b[2J") >= 2 and "ingest" in out.getvalue()
    out = io.StringIO()
    snap = run([], once=True, out=out, clock=lambda: 100.0)
    assert snap["stages"] == [] and "is a worker running?" in out.getvalue()
