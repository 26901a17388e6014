"""stream replay: the log reader, the prequential protocol on hand-made logs, baselines, in-process runs."""

import random

import pytest

from stream.cli import main
from stream.config import Settings
from stream.replay.evaluate import CooccurrenceBaseline, PopularityBaseline, Prequential, requests, run_baseline
from stream.replay.events import request_id, to_events
from stream.replay.inprocess import run_in_process
from stream.replay.log import ReplayInputError, from_text, parse_mapping


def test_header_aliases_recbole_types_and_mapped_columns():
    rows = from_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n7\t3\t5\t100\n")
    assert [(r.user, r.item, r.rating, r.ts_ms) for r in rows] == [("7", "3", 5.0, 100_000)]
    rows = from_text("visitor,thing,when\nu,i,1700000000000\n",
                     mapping=parse_mapping(["user=visitor", "item=thing", "timestamp=when"]))
    assert rows[0].ts_ms == 1_700_000_000_000  # milliseconds detected


@pytest.mark.parametrize("text, message", [
    ("user,item\n1,2\n", "log:1: the header names no timestamp column"),
    ("user,item,timestamp\n1,2,3\n1,2,soon\n", "log:3: timestamp 'soon' is not a number"),
    ("user,item,timestamp\n1,2,inf\n", "log:2: timestamp 'inf' is not a positive number"),
    ("user,item,timestamp,rating\n1,2,3,good\n", "log:2: rating 'good' is not a number"),
    ("user,item,timestamp\n1,2\n", "log:2: 2 fields, the header needs at least 3"),
    ("user,item,timestamp\n,2,3\n", "log:2: empty user"),
    ("user,item,timestamp\n", "log: no rows after the header"),
    ("", "log:1: empty file"),
])
def test_bad_rows_name_their_line(text, message):
    with pytest.raises(ReplayInputError, match=message):
        from_text(text)


def test_bad_mapping_is_refused():
    with pytest.raises(ReplayInputError, match="expected ROLE=COLUMN"):
        parse_mapping(["person=x"])


def test_rows_sorted_by_time_and_limited_after_sorting():
    rows = from_text("user,item,timestamp\na,1,30\nb,2,10\nc,3,20\n", limit=2)
    assert [r.item for r in rows] == ["2", "3"]


def test_a_request_precedes_each_evaluated_positive():
    rows = from_text("user,item,timestamp,rating\nu,a,1,5\nu,b,2,1\nv,a,3,5\nu,c,4,4\n")
    evs = list(to_events(rows, 4.0))
    assert [(e["event_type"], e["user_id"], e["item_id"]) for e in evs] == [
        ("click", "u", "a"), ("view", "u", "b"), ("click", "v", "a"),
        ("recommend_request", "u", None), ("click", "u", "c")]
    assert evs[3]["event_id"] == request_id(rows[3]) and evs[3]["timestamp"] == evs[4]["timestamp"]
    assert [r.item for r in requests(rows, 4.0)] == ["c"]


def test_prequential_metrics_on_known_hits():
    ev = Prequential(k=10, t_min=0, t_max=100, periods=2, catalogue=20)
    ev.add("a", ["a", "b"], 10)             # hit at rank 0
    ev.add("b", ["x", "y", "b"], 20)        # hit at rank 2
    ev.add("c", ["x"], 60)                  # miss
    ev.add("d", [f"i{j}" for j in range(10)] + ["d"], 90)  # 11th: not in the top 10
    s = ev.summary()
    assert s["hr10"] == 0.5 and s["n_eval"] == 4
    assert s["mrr"] == pytest.approx((1 + 1 / 3) / 4)
    assert s["ndcg10"] == pytest.approx((1 + 0.5) / 4)  # 1/log2(2) + 1/log2(4)
    assert [p["n_eval"] for p in s["periods"]] == [2, 2] and [p["hr10"] for p in s["periods"]] == [1.0, 0.0]
    assert s["coverage"] == pytest.approx(len({"a", "b", "x", "y"} | {f"i{j}" for j in range(10)}) / 20)


def test_baselines_on_a_hand_made_log():
    # u1 and u2 both go a -> b; u3 takes a: co-occurrence says b, popularity says a (consumed) then b
    text = "user,item,timestamp\nu1,a,1\nu1,b,2\nu2,a,3\nu2,b,4\nu3,c,5\nu3,c2,6\nu3,a,7\nu3,b,8\n"
    rows = from_text(text)
    co = run_baseline(rows, None, CooccurrenceBaseline(rows)).summary()
    pop = run_baseline(rows, None, PopularityBaseline(rows)).summary()
    assert co["n_eval"] == pop["n_eval"] == 5
    co_lists = CooccurrenceBaseline(rows)
    for r in rows[:7]:
        co_lists.observe(r, True)
    assert co_lists.recommend("u3", 1) == ["b"]  # a's co-occurring item, not the consumed a
    assert co["hits"] >= 2 and pop["hits"] >= 1


def clustered_log(users=60, items_per_cluster=15, clusters=4, per_user=25, seed=5):
    """Users who walk through the items of one taste cluster, in a cluster-specific order."""
    rng = random.Random(seed)
    lines = ["user,item,timestamp,rating"]
    t = 1_600_000_000
    walks = []
    for u in range(users):
        c = u % clusters
        order = [f"c{c}i{j}" for j in range(items_per_cluster)]
        start = rng.randrange(3)
        walks.append((f"u{u}", order[start:] + order[:start]))
    for step in range(per_user):
        for user, walk in walks:
            t += rng.randrange(1, 30)
            item = walk[step % len(walk)] if rng.random() < 0.85 else f"c{rng.randrange(clusters)}i{rng.randrange(items_per_cluster)}"
            lines.append(f"{user},{item},{t},{5 if rng.random() < 0.7 else 2}")
    return "\n".join(lines) + "\n"


def test_in_process_replay_runs_the_stage_code_and_beats_popularity_on_item_level_tastes():
    rows = from_text(clustered_log())
    targets = {request_id(r): r for r in requests(rows, 4.0)}
    ev = Prequential(10, rows[0].ts_ms, rows[-1].ts_ms, 4, catalogue=60)
    got = []

    def on_rec(rec):
        got.append(rec["request_event_id"])
        r = targets[rec["request_event_id"]]
        ev.add(r.item, [i["item_id"] for i in rec["items"]], r.ts_ms)
    info = run_in_process(rows, 4.0, Settings.load(), on_rec)
    assert sorted(got) == sorted(targets)  # one list per request, none lost
    assert info["dead_letters"] == {} and info["model_version"] >= 1
    assert 0 < info["recall_hits"] <= info["recall_trials"]
    pop = run_baseline(rows, 4.0, PopularityBaseline(rows)).summary()["hr10"]
    assert ev.summary()["hr10"] > 1.5 * pop


def test_cli_replay_in_process_writes_json_and_plot(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text(clustered_log(users=20, per_user=10))
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["replay", str(log), "--in-process", "--positive-min-rating", "4", "--json", str(out),
                 "--plot", str(png)]) == 0
    import json
    s = json.loads(out.read_text())
    assert {"hr10", "ndcg10", "mrr", "candidate_recall", "coverage", "n_eval", "periods"} <= set(s)
    assert set(s["baselines"]) == {"popularity", "cooccurrence"} and "hr10" in s["baselines"]["popularity"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "HR@10" in capsys.readouterr().out


@pytest.mark.parametrize("args, code, message", [
    (["--limit", "0"], 2, "argument --limit: must be an integer >= 1, got 0"),
    (["--json", "/no/such/folder/x.json"], 2, "folder /no/such/folder does not exist"),
    (["--positive-min-rating", "4"], 1, "has no rating column"),
    (["--periods", "0"], 2, "argument --periods: must be an integer within [1, 1000], got 0"),
    (["--plot", "out.txt"], 1, "the plot is a PNG file"),
    (["--isolated-workers", "0"], 2, "argument --isolated-workers: must be an integer within [1, 64]"),
    (["--workers", "2"], 1, "--workers N: only without --in-process"),
])
def test_cli_replay_refuses_bad_arguments_with_one_line(tmp_path, capsys, args, code, message):
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\nu,a,1\nu,b,2\n")
    try:
        got = main(["replay", str(log), "--in-process", *args])
    except SystemExit as exc:  # argparse refuses the value
        got = exc.code
    err = capsys.readouterr().err
    assert got == code and message in err.strip().splitlines()[-1] and "Traceback" not in err, err


def test_cli_replay_names_the_bad_line(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\nu,a,1\nu,b,yesterday\n")
    assert main(["replay", str(log), "--in-process"]) == 1
    assert f"{log}:3: timestamp 'yesterday' is not a number" in capsys.readouterr().err
