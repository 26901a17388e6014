"""score -> feedback -> learn -> registry -> hot swap, with a real worker, broker and Redis."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
import redis

from stream.adapters.kafka import producer, read
from stream.adapters.registry import ModelRegistry
from stream.core.model import new_model
from stream.partitioning import partition_for
from stream.serde import SchemaRegistry
from stream.stack import wait_until
from stream.workload import Workload
from tests.conftest import run_cli
from tests.integration.pipeline import fresh_stack
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration
REG = SchemaRegistry.default()
KEY = "stream-dev-registry-key"
ENV = {"STREAM_MODEL_ATTRIBUTION_WINDOW_S": "8", "STREAM_MODEL_RELEASE_EVERY_EXAMPLES": "40",
       "STREAM_MODEL_RELEASE_EVERY_S": "2", "STREAM_MODEL_POLL_INTERVAL_S": "0.5"}


def send(p, events):
    for ev in events:
        p.produce("clicks.v1", REG.encode_click(ev), key=ev["user_id"].encode(), partition=partition_for(ev["user_id"], 4))
    assert p.flush(10) == 0


def now_ms():
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reco")
    with fresh_stack(tmp) as env:
        env = {**env, **ENV}
        w = WorkerProcess(env, tmp, "r1")
        state = {"env": env, "worker": w, "tmp": tmp, "p": producer(env["STREAM_KAFKA_BOOTSTRAP_SERVERS"])}
        try:
            w.wait_ready()
            assert wait_until(lambda: "event=partitions_assigned" in w.log_path.read_text(), 60, 0.2), w.log_tail()
            yield state
        finally:
            w.stop()
            state["worker"].stop()  # a test may have replaced it (restart)


def registry(env):
    return ModelRegistry(env["STREAM_REDIS_URL"], KEY, REG)


def test_requests_get_recommendations_and_clicks_become_labels(loop):
    env, p = loop["env"], loop["p"]
    bootstrap = env["STREAM_KAFKA_BOOTSTRAP_SERVERS"]
    wl = Workload(seed=31, users=20, items=300, categories=6, user_prefix="r")
    warm = list(wl.events(2000))
    for ev in warm:
        ev["timestamp"] = now_ms()
    send(p, warm)
    requests = [dict(wl.event(u, "recommend_request"), timestamp=now_ms()) for u in range(20)]
    send(p, requests)
    recs = {}
    deadline = time.monotonic() + 60
    while not {e["event_id"] for e in requests} <= set(recs) and time.monotonic() < deadline:
        for m in read(bootstrap, "recommendations.v1", idle_timeout=0.5, deadline=time.monotonic() + 5):
            r = REG.decode("Recommendation", m.value)
            recs[r["request_event_id"]] = r
    asked = {e["event_id"] for e in requests}
    assert asked <= set(recs), "every request got a recommendation"
    for e in requests:
        r = recs[e["event_id"]]
        assert r["user_id"] == e["user_id"] and len(r["items"]) == 10 and r["candidates"] >= 10
        assert r["model_name"] == "reco" and r["variant"] == "champion"
        scores = [i["score"] for i in r["items"] if i["source"] != "explore"]
        assert scores == sorted(scores, reverse=True)
    # users click the first item of half of the recommendations (twice: one is a duplicate)
    clicked = {}
    clicks = []
    for e in requests[:10]:
        r = recs[e["event_id"]]
        item = r["items"][0]
        clicked[r["rec_id"]] = item["item_id"]
        for _ in range(2):
            clicks.append(dict(wl.event(int(e["user_id"][1:]), "click"), item_id=item["item_id"],
                               category=item["category"], rec_id=r["rec_id"], timestamp=now_ms()))
    dup_before = loop["worker"].counter("feedback", "duplicate")
    send(p, clicks)
    time.sleep(8.5)  # past the 8 s attribution window; then event time must move on
    send(p, [dict(wl.event(0, "view"), timestamp=now_ms())])
    labels = defaultdict(dict)
    deadline = time.monotonic() + 60
    wanted = {recs[e["event_id"]]["rec_id"] for e in requests}
    while time.monotonic() < deadline and not all(len(labels[r]) == 10 for r in wanted):
        for m in read(bootstrap, "feedback.v1", idle_timeout=1.5, deadline=time.monotonic() + 10):
            fb = REG.decode("Feedback", m.value)
            labels[fb["rec_id"]][fb["item_id"]] = fb["label"]
            assert fb["features"] and "aff_share" in fb["features"]
    for rec_id in wanted:
        assert len(labels[rec_id]) == 10, "every served item was labelled once its window closed"
        expected = {i: int(i == clicked.get(rec_id)) for i in labels[rec_id]}
        assert labels[rec_id] == expected
    # each second click is a duplicate (of every open recommendation of that user holding the item)
    assert loop["worker"].counter("feedback", "duplicate") - dup_before >= 10


def test_model_versions_increase_as_feedback_arrives(loop):
    reg = registry(loop["env"])
    assert wait_until(lambda: (reg.latest("reco") or {}).get("version", 0) >= 2, 60, 0.5)
    releases = reg.versions("reco")
    assert [r["version"] for r in releases] == list(range(1, len(releases) + 1))
    assert releases[-1]["examples_seen"] > 0 and releases[-1]["parent_version"] == releases[-2]["version"]
    out = run_cli("model", "list", env=loop["env"], check=True).stdout
    assert f"v{releases[-1]['version']}" in out and "learning" in out
    reg.close()


def test_tampered_blob_is_refused_and_the_previous_version_keeps_serving(loop):
    env, w = loop["env"], loop["worker"]
    reg = registry(env)
    good = reg.latest("reco")["version"]
    assert wait_until(lambda: f"model_swapped model=reco version={good}" in w.log_path.read_text(), 30, 0.3)
    run_cli("model", "freeze", env=env, check=True)  # no new releases from the learner meanwhile
    bad = reg.release("reco", new_model(), family="logreg", parent=good, examples=0, metrics={})
    client = redis.Redis.from_url(env["STREAM_REDIS_URL"])
    blob = client.get(bad["blob_key"])
    client.set(bad["blob_key"], blob[:-1] + bytes([blob[-1] ^ 1]))  # one bit flipped
    client.close()
    assert wait_until(lambda: f"event=model_refused model=reco version={bad['version']}" in w.log_path.read_text(),
                      30, 0.3), w.log_tail()
    proc = run_cli("model", "show", str(bad["version"]), env=env)
    assert proc.returncode == 1 and "does not match its release" in proc.stderr and "Traceback" not in proc.stderr
    wl = Workload(seed=32, users=5, items=300, categories=6, user_prefix="r")
    req = dict(wl.event(1, "recommend_request"), timestamp=now_ms())
    send(loop["p"], [req])
    served = None
    for m in read(env["STREAM_KAFKA_BOOTSTRAP_SERVERS"], "recommendations.v1", idle_timeout=3,
                  deadline=time.monotonic() + 30):
        r = REG.decode("Recommendation", m.value)
        if r["request_event_id"] == req["event_id"]:
            served = r
    assert served is not None and served["model_version"] == good
    run_cli("model", "resume", env=env, check=True)
    reg.close()


def test_restarted_worker_resumes_from_the_latest_release(loop):
    env, tmp = loop["env"], loop["tmp"]
    loop["worker"].stop()
    reg = registry(env)
    client = redis.Redis.from_url(env["STREAM_REDIS_URL"])
    for r in reg.versions("reco"):  # drop the tampered release of the previous test
        try:
            reg.load(r)
        except Exception:
            client.delete(f"stream:model:reco:release:{r['version']}")
            client.zrem("stream:model:reco:versions", str(r["version"]))
    good = [r for r in reg.versions("reco")][-1]
    client.set("stream:model:reco:latest", good["version"])
    client.close()
    w2 = WorkerProcess(env, tmp, "r2")
    loop["worker"] = w2
    w2.wait_ready()
    assert wait_until(lambda: f"event=learner_resumed model=reco version={good['version']}" in
                      w2.log_path.read_text(), 60, 0.3), w2.log_tail()
    reg.close()
