"""`stream dashboard`: the history the page draws (series over time, bounded, drift against thresholds,
recent alerts and dead letters), the reader that folds decoded records, and the HTTP routes."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from stream.adapters.kafka import Message
from stream.dashboard import History, Reader, bind, describe, serve, topics
from stream.errors import BrokerError, StreamError
from stream.serde import SchemaRegistry
from stream.topology import Topology

REG = SchemaRegistry.default()


def metrics(stage, worker, at, events_in=0, **outputs):
    return {"stage": stage, "worker": worker, "emitted_at": at, "interval_s": 1.0, "events_in": events_in,
            "events_out": events_in, "rejected": 0, "duplicates": 0, "replays": 0, "errors": 0, "messages": 1,
            "batch_size_mean": 1.0, "processing_ms": {"p99": 1.0}, "event_lag_ms": {"p99": 5.0}, "consumer_lag": -1,
            "rss_bytes": 0, "inputs": {}, "outputs": outputs}


def drift(stage, quantity, statistic, value, threshold, alarm=False, window_end=1_000):
    return {"stage": stage, "quantity": quantity, "statistic": statistic, "value": value, "threshold": threshold,
            "alarm": alarm, "window_start": window_end - 1_000, "window_end": window_end, "sample_size": 500,
            "reference_size": 1500, "reference_id": "r1", "late_events": 0, "calibrated": True}


def alert(i, created):
    return {"alert_id": f"a{i}", "name": f"drift.input.psi.{i}", "severity": "WARNING", "stage": "drift",
            "message": f"alert {i}", "created": created, "model_name": None, "evidence": {"value": "0.9"}}


def dead_letter(offset, failed_at):
    return {"stage": "ingest", "error_class": "ValidationError", "reason": "missing_user_id",
            "message": "user_id is missing in {'secret': 1}", "source_topic": "clicks.v1", "source_partition": 2,
            "source_offset": offset, "batch_index": 3, "key": b"user-1", "raw": b"payload-bytes", "failed_at": failed_at}


def test_series_per_stage_and_traffic_slice_with_gaps_where_a_stage_had_no_record():
    h = History(points=10, refresh_s=1.0)
    h.add("StageMetrics", metrics("ingest", "w1", 1_000, events_in=500, consumer_lag_events=40.0))
    h.add("StageMetrics", metrics("learn", "l1", 1_000, events_in=50, model_version=3.0,
                                  **{"model_ctr|traffic=champion": 0.21, "model_log_loss|traffic=champion": 0.52,
                                     "model_ctr|traffic=explore": 0.05}))
    assert h.tick(1_500)
    h.add("StageMetrics", metrics("profile", "w1", 2_000, events_in=480))
    h.add("StageMetrics", metrics("ingest", "w1", 2_000, events_in=600, consumer_lag_events=-1.0))
    h.add("StageMetrics", metrics("learn", "l1", 2_000, events_in=50, model_version=4.0,
                                  **{"model_ctr|traffic=champion": 0.25, "model_log_loss|traffic=champion": 0.48}))
    assert h.tick(2_600)
    s = h.snapshot(2_600)["series"]
    assert s["t"] == [1_500, 2_600]
    assert list(s["in_per_s"]) == ["ingest", "profile", "learn"]  # pipeline order
    assert s["in_per_s"]["ingest"] == [500.0, 600.0] and s["in_per_s"]["profile"] == [None, 480.0]
    assert s["lag_events"]["ingest"] == [40, None]  # unknown lag is a gap, not -1
    assert s["ctr"] == {"champion": [0.21, 0.25], "explore": [0.05, None]}
    assert s["log_loss"] == {"champion": [0.52, 0.48]} and s["model_version"] == [3, 4]


def test_the_ring_is_bounded_and_keeps_the_newest_points_one_refresh_apart():
    h = History(points=3, refresh_s=2.0)
    h.add("StageMetrics", metrics("ingest", "w1", 0, events_in=10))
    taken = [h.tick(t) for t in range(0, 20_000, 500)]
    assert sum(taken) == 10  # every 2 s out of 20 s
    assert h.snapshot(20_000)["series"]["t"] == [14_000, 16_000, 18_000]
    assert h.snapshot(20_000)["series"]["in_per_s"] == {}  # its worker went quiet before every point kept


def test_drift_keeps_the_latest_window_per_statistic_against_its_threshold_alarms_first():
    h = History()
    h.add("DriftReport", drift("input", "price", "psi", 0.10, 0.25, window_end=2_000))
    h.add("DriftReport", drift("input", "price", "psi", 0.90, 0.25, alarm=True, window_end=1_000))  # older: ignored
    h.add("DriftReport", drift("concept", "log_loss", "adwin", 0.8, 0.5, alarm=True, window_end=2_000))
    h.add("DriftReport", drift("input", "event_type", "chi2", 1e-8, 1e-6, window_end=2_000))  # lower is worse
    rows = h.snapshot(3_000)["drift_stats"]
    assert [(r["quantity"], r["statistic"]) for r in rows] == [("log_loss", "adwin"), ("event_type", "chi2"),
                                                               ("price", "psi")]
    assert rows[0]["alarm"] and rows[0]["level"] == 1.6 and rows[0]["threshold"] == 0.5
    assert rows[1]["level"] == 100.0 and not rows[1]["alarm"]
    assert rows[2] == {"stage": "input", "quantity": "price", "statistic": "psi", "value": 0.10, "threshold": 0.25,
                       "alarm": False, "level": 0.4, "calibrated": True, "window_end": 2_000, "sample_size": 500}


def test_alerts_and_dead_letters_keep_the_last_twenty_newest_first_and_no_payload():
    h = History()
    for i in range(30):
        h.add("Alert", alert(i, 1_000 + i))
        h.add("DeadLetter", dead_letter(100 + i, 5_000 + i))
    snap = h.snapshot(10_000)
    assert [a["name"] for a in snap["alerts"][:2]] == ["drift.input.psi.29", "drift.input.psi.28"]
    assert len(snap["alerts"]) == 20 and snap["alerts"][-1]["created"] == 1_010
    assert len(snap["dead_letters"]) == 20 and snap["dead_letters"][0]["offset"] == 129
    assert snap["dead_letters"][0] == {"stage": "ingest", "reason": "missing_user_id", "error_class": "ValidationError",
                                       "topic": "clicks.v1", "partition": 2, "offset": 129, "batch_index": 3,
                                       "failed_at": 5_029}
    text = json.dumps(snap)
    assert "payload" not in text and "secret" not in text and "user-1" not in text and "evidence" not in text


def test_the_page_reads_every_monitoring_alert_drift_and_dead_letter_topic():
    chosen = topics(Topology.load())
    assert set(chosen.values()) == {"StageMetrics", "Alert", "DriftReport", "DeadLetter"}
    assert {"alerts.v1", "clicks.dlq.v1", "drift.concept.v1", "monitor.ingest.v1", "monitor.learn.v1"} <= set(chosen)
    assert describe(chosen) == "monitor.*.v1, alerts.v1, drift.*.v1, clicks.dlq.v1"


def message(topic, value, offset=0):
    return Message(topic, 0, offset, None, value, 0, ())


def test_the_reader_folds_decoded_records_skips_undecodable_ones_and_reports_a_failure(caplog):
    h = History(refresh_s=0.01)

    def feed():
        yield message("monitor.ingest.v1", REG.encode("StageMetrics", metrics("ingest", "w1", int(time.time() * 1000),
                                                                               events_in=100)))
        yield message("alerts.v1", b"\x00garbage", offset=1)
        yield None
        yield message("clicks.dlq.v1", REG.encode("DeadLetter", dead_letter(7, 1_000)), offset=2)
        raise BrokerError("broker went away")

    reader = Reader(h, feed(), topics(Topology.load()), REG.decode)
    reader.start()
    reader.thread.join(5)
    assert not reader.alive() and isinstance(reader.error, BrokerError)
    snap = h.snapshot(int(time.time() * 1000))
    assert snap["stages"][0]["stage"] == "ingest" and snap["dead_letters"][0]["offset"] == 7
    assert snap["alerts"] == [] and h.records == 2 and snap["series"]["t"]
    assert "record_undecodable" in caplog.text and "dashboard_reader_failed" in caplog.text


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def server():
    h = History(refresh_s=0.5)
    h.add("StageMetrics", metrics("ingest", "w1", int(time.time() * 1000), events_in=250))
    h.add("DriftReport", drift("predictions", "score", "ks", float("nan"), 0.15))
    h.tick(int(time.time() * 1000))
    srv = bind("127.0.0.1", 0, h)
    web = threading.Thread(target=srv.serve_forever, args=(0.1,), daemon=True)
    web.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        web.join(5)


def test_the_page_is_self_contained_svg_and_script(server):
    status, headers, body = get(server.url)
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<svg" in page and "<script>" in page and "polyline" in page and 'fetch("api/snapshot"' in page
    for external in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert external not in page, external
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_the_snapshot_is_json_with_series_and_other_paths_are_404(server):
    status, headers, body = get(server.url + "api/snapshot?since=0")
    snap = json.loads(body)  # strict JSON: the NaN drift value became null
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert snap["stages"][0]["stage"] == "ingest" and snap["series"]["in_per_s"]["ingest"] == [250.0]
    assert snap["drift_stats"][0]["value"] is None
    status, _, body = get(server.url + "healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    for path in ("nope", "api/snapshot/x", "index.html", "..%2f..%2fetc%2fpasswd"):
        assert get(server.url + path)[0] == 404, path


def test_a_taken_port_is_one_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(StreamError, match=r"cannot serve on 127.0.0.1:\d+: Address already in use"):
            bind("127.0.0.1", s.getsockname()[1], History())


def test_serve_says_where_it_serves_and_stops_on_sigterm():
    out = io.StringIO()

    def idle():
        while True:
            yield None

    def stop_when_serving():
        deadline = time.monotonic() + 10
        while "serving http" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = out.getvalue().split()[3]
        get(url + "healthz")  # answered: serve_forever runs, so the signal handlers are in place
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=stop_when_serving, daemon=True).start()
    assert serve(idle(), topics(Topology.load()), REG.decode, host="127.0.0.1", port=0, refresh_s=1.0, out=out) == 0
    assert out.getvalue().startswith("stream dashboard: serving http://127.0.0.1:")
    assert "(from monitor.*.v1, alerts.v1, drift.*.v1, clicks.dlq.v1)" in out.getvalue()
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


def test_serve_exits_with_the_reason_when_the_reader_fails():
    def failing():
        yield None
        raise BrokerError("reading alerts.v1: broker gone")

    with pytest.raises(StreamError, match="reading the monitoring topics: reading alerts.v1: broker gone"):
        serve(failing(), topics(Topology.load()), REG.decode, host="127.0.0.1", port=0, refresh_s=1.0,
              out=io.StringIO())
