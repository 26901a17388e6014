"""Item relations: co-visitation weights, decay, the per-item bound, merge, memory."""

import random

import numpy as np
import pytest

from stream.core.relations import ItemRelations

DAY_MS = 86_400_000


def feed(rel, sessions, ts=0, weight=1.0):
    for items in sessions:
        recent = []
        for item in items:
            rel.update(item, recent, weight, ts)
            recent.insert(0, item)


def test_weights_count_pairs_by_their_distance_in_the_users_history():
    rel = ItemRelations(half_life_s=0, window=3)
    feed(rel, [[0, 1, 2, 3, 4]])
    # 4 came after 3 (d=1), 2 (d=2), 1 (d=3); 0 is out of the window
    assert rel.neighbours(4) == pytest.approx({3: 1.0, 2: 0.5, 1: 1 / 3})
    assert 0 not in rel.neighbours(4) and 4 not in rel.neighbours(0)
    assert rel.neighbours(0) == pytest.approx({1: 1.0, 2: 0.5, 3: 1 / 3})  # backward: as strong by default
    one_way = ItemRelations(half_life_s=0, window=3, backward=0.0)
    feed(one_way, [[0, 1]])
    assert one_way.neighbours(0) == {1: 1.0} and one_way.neighbours(1) == {}


def test_the_item_itself_in_the_history_is_not_a_neighbour():
    rel = ItemRelations(half_life_s=0)
    rel.update(5, [5, 6], 1.0, 0)
    assert rel.neighbours(5) == {6: 1.0} and rel.neighbours(6) == {5: 1.0}


def test_old_co_visits_decay_with_the_half_life():
    rel = ItemRelations(half_life_s=86_400)
    rel.update(1, [0], 1.0, 0)          # (0, 1) a day before (0, 2)
    rel.update(2, [0], 1.0, DAY_MS)
    w = rel.neighbours(0)
    assert w[2] / w[1] == pytest.approx(2.0)  # what is a day old weighs half
    assert rel.popularity(np.array([1, 2, -1])) / rel.pop[2] == pytest.approx([0.5, 1.0, 0.0])


def test_rebasing_keeps_the_ratios_and_the_weights_finite():
    rel = ItemRelations(half_life_s=86_400)
    rel.update(1, [0], 1.0, 0)
    rel.update(2, [0], 1.0, 10 * DAY_MS)
    before = rel.neighbours(0)
    rel.update(3, [0], 1.0, 100 * DAY_MS)  # 100 half-lives: past float32's range without a rebase
    after = rel.neighbours(0)
    assert rel.t_ref == 100 * DAY_MS and all(np.isfinite(list(after.values())))
    assert after[2] / after[1] == pytest.approx(before[2] / before[1], rel=1e-3)
    assert after[3] == pytest.approx(1.0)


def test_a_full_row_keeps_the_heavy_neighbours_and_replaces_the_lightest():
    rel = ItemRelations(half_life_s=0, width=4, window=1)
    for j, times in zip(range(1, 5), (5, 4, 3, 2)):
        for _ in range(times):
            rel.update(j, [0], 1.0, 0)
    assert rel.neighbours(0) == {1: 5.0, 2: 4.0, 3: 3.0, 4: 2.0}
    rel.update(9, [0], 1.0, 0)  # a newcomer takes the lightest slot (4), with its own weight
    assert rel.neighbours(0) == {1: 5.0, 2: 4.0, 3: 3.0, 9: 1.0}
    rng = random.Random(0)
    for _ in range(2000):  # a long tail of one-off neighbours never pushes the heavy ones out
        rel.update(rng.randrange(100, 10_000), [0], 1.0, 0)
    kept = rel.neighbours(0)
    assert len(kept) == 4 and {1, 2, 3} <= set(kept)


def test_scores_sum_weights_over_the_recent_items_and_count_links():
    rel = ItemRelations(half_life_s=0)
    feed(rel, [[0, 5], [1, 5], [1, 6]])
    idx, w, links = rel.scores([0, 1])  # 0 most recent (d=1), 1 at d=2
    got = {int(i): (float(a), int(n)) for i, a, n in zip(idx, w, links)}
    assert got[5] == pytest.approx((1.0 + 1.0 / 2, 2))
    assert got[6] == pytest.approx((1.0 / 2, 1))
    assert list(idx) == sorted(idx)
    assert [i for i, _ in rel.related([0, 1], exclude={5})] == [6]


def test_merge_of_two_workers_equals_one_that_saw_everything():
    rng = random.Random(3)
    sessions = [[rng.randrange(40) for _ in range(8)] for _ in range(300)]
    whole, a, b = (ItemRelations(half_life_s=86_400, width=64) for _ in range(3))
    for k, s in enumerate(sessions):  # pairs of sessions share a time: both workers start at t=0
        feed(whole, [s], ts=k // 2 * 1000)
        feed(a if k % 2 else b, [s], ts=k // 2 * 1000)
    a.merge(b)
    assert a.t_ref == whole.t_ref == 0
    for i in range(40):
        assert a.neighbours(i) == pytest.approx(whole.neighbours(i), rel=1e-4)
    assert np.allclose(a.pop[:40], whole.pop[:40], rtol=1e-6)


def test_memory_per_item_is_bounded_by_the_width():
    import tracemalloc
    tracemalloc.start()
    rel = ItemRelations(half_life_s=0, width=80, capacity=16)
    rng = random.Random(1)
    for _ in range(20_000):
        rel.update(rng.randrange(500), [rng.randrange(500) for _ in range(20)], 1.0, 0)
    held, _ = tracemalloc.get_traced_memory()  # what building the relations allocated and still holds
    tracemalloc.stop()
    assert int(rel.row_fill().max()) == 80 and len(rel) == 500
    # 8 B per slot, 4 B of fill, 8 B of popularity; capacity grows by half: at most 1.5x the rows
    assert rel.nbytes() <= 1.5 * 500 * (8 * 80 + 4 + 8) + 1024
    assert held <= rel.nbytes() * 1.1


def test_several_newcomers_of_one_event_take_the_lightest_old_slots():
    rel = ItemRelations(half_life_s=0, width=4, window=5)
    for j, times in zip(range(1, 5), (5, 4, 3, 2)):
        for _ in range(times):
            rel.update(0, [j], 1.0, 0)  # backward: row 0 gets j
    assert rel.neighbours(0) == {1: 5.0, 2: 4.0, 3: 3.0, 4: 2.0}
    rel.update(0, [7, 8, 1], 1.0, 0)  # 1 is known (+1/3); 7 and 8 replace the two lightest, 4 and 3
    assert rel.neighbours(0) == pytest.approx({1: 5 + 1 / 3, 2: 4.0, 7: 1.0, 8: 0.5})


def test_an_item_twice_in_the_history_adds_up():
    rel = ItemRelations(half_life_s=0, window=5)
    rel.update(9, [3, 4, 3], 1.0, 0)
    assert rel.neighbours(9) == pytest.approx({3: 1 + 1 / 3, 4: 0.5})
    assert rel.neighbours(3) == pytest.approx({9: 1 + 1 / 3})


def test_the_rows_grow_past_their_first_capacity():
    rel = ItemRelations(half_life_s=0, capacity=2)
    rel.update(1000, [5, 2000], 1.0, 0)
    assert len(rel) == 2001 and rel.neighbours(2000) == {1000: 0.5} and rel.neighbours(1000) == {5: 1.0, 2000: 0.5}
    assert rel.neighbours(5000) == {} and rel.scores([5000])[0].size == 0


def test_popular_items_by_decayed_weight():
    rel = ItemRelations(half_life_s=0)
    rel.refresh_every = 1
    for item, n in ((3, 5), (1, 3), (2, 1)):
        for _ in range(n):
            rel.update(item, [], 1.0, 0)
    assert list(rel.popular(2)) == [3, 1] and rel.max_pop() == 5.0


def _random_events(rng, n_items, n, window=20):
    events, ts = [], 0
    histories: dict[int, list[int]] = {}
    for _ in range(n):
        u = rng.randrange(50)
        recent = histories.setdefault(u, [])
        item = rng.randrange(n_items)
        ts += rng.randrange(0, 3_600_000)
        events.append((item, list(recent), rng.choice([1.0, 2.0, 5.0]), ts))
        recent.insert(0, item)
        del recent[window:]
    return events


def test_a_batch_equals_one_by_one_while_no_row_is_full():
    rng = random.Random(11)
    events = _random_events(rng, 60, 3000)
    one, many = (ItemRelations(width=100, window=20, half_life_s=86_400) for _ in range(2))
    for e in events:
        one.update(*e)
    for k in range(0, len(events), 37):
        many.update_many(events[k:k + 37])
    assert int(one.row_fill().max()) < 100 and len(one) == len(many) and one.t_ref == many.t_ref
    for i in range(len(one)):
        assert many.neighbours(i) == pytest.approx(one.neighbours(i), rel=1e-4)
    assert np.allclose(many.pop[:len(many)], one.pop[:len(one)])


def test_a_batch_into_full_rows_keeps_the_bound_and_the_heavy_neighbours():
    rel = ItemRelations(half_life_s=0, width=4, window=1)
    for j, times in zip(range(1, 5), (5, 4, 3, 2)):
        for _ in range(times):
            rel.update(j, [0], 1.0, 0)
    # one batch: 1 again (+1), three newcomers to row 0 with weights 3, 1, 1 (7 twice, 8, 9)
    rel.update_many([(1, [0], 1.0, 0), (7, [0], 2.0, 0), (7, [0], 1.0, 0), (8, [0], 1.0, 0), (9, [0], 1.0, 0)])
    # the three take the three lightest entries from before the batch (4, 3, 2); 1 stays
    assert rel.neighbours(0) == {1: 6.0, 7: 3.0, 8: 1.0, 9: 1.0}
    rng = random.Random(12)
    events = _random_events(rng, 400, 4000)
    big = ItemRelations(half_life_s=0, width=8, window=20)
    for k in range(0, len(events), 64):
        big.update_many(events[k:k + 64])
    fill = big.row_fill()
    assert int(fill.max()) == 8 and (big.nid[:len(big)][:, :8][np.arange(8)[None, :] < fill[:, None]] >= 0).all()
    for i in range(len(big)):  # never a neighbour twice, never the item itself
        ids = big.nid[i, :fill[i]].tolist()
        assert len(set(ids)) == len(ids) and i not in ids


def test_a_batch_handles_empty_histories_unknown_items_and_the_item_in_its_own_history():
    events = [(0, [], 1.0, 0), (1, [0], 1.0, 0), (2, [2, -1, 1, 0], 1.0, 0), (-1, [0], 1.0, 0), (3, [], 1.0, 0)]
    one, many = ItemRelations(half_life_s=0, window=2), ItemRelations(half_life_s=0, window=2)
    for e in events:
        one.update(*e)
    many.update_many(events)
    assert [many.neighbours(i) for i in range(4)] == [one.neighbours(i) for i in range(4)]
    assert many.neighbours(2) == {1: 0.5} and list(many.pop[:4]) == [1.0, 1.0, 1.0, 1.0]  # -1 at d=1, 1 at d=2
