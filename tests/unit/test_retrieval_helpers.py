"""Retrieval helpers: the catalog's first occurrences across pools and largest popularity, organic negatives."""

import random

import numpy as np

from stream.core.catalog import Catalog


def filled(n: int) -> Catalog:
    c = Catalog(half_life_s=3600)
    for i in range(n):
        c.update(f"i{i}", None, "view", 1_000 + i)
    return c


def test_first_occurrences_keep_pool_order_and_the_pool_of_the_first_sighting():
    c = filled(10)
    idx, src = c.first_occurrences([np.array([3, 1, 3]), np.array([], dtype=np.int64),
                                    np.array([1, 7, -1, 2]), np.array([7, 0])])
    assert idx.tolist() == [3, 1, 7, 2, 0] and src.tolist() == [0, 0, 2, 2, 3]


def test_first_occurrences_agree_with_a_sort_and_leave_the_scratch_clean():
    c = filled(300)
    rng = np.random.default_rng(0)
    for _ in range(50):
        pools = [rng.integers(-1, 300, rng.integers(0, 80)) for _ in range(4)]
        allidx = np.concatenate(pools)
        allidx = allidx[allidx >= 0]
        _, first = np.unique(allidx, return_index=True)
        assert c.first_occurrences(pools)[0].tolist() == allidx[np.sort(first)].tolist()
    assert (c._first == np.iinfo(np.int64).max).all()


def test_the_largest_popularity_is_tracked_through_growth_and_rebases():
    c = Catalog(half_life_s=3600)
    rng = random.Random(2)
    ts = 0
    for _ in range(5000):
        ts += rng.randrange(0, 200_000)  # hours pass: the scale rebases many times
        c.update(f"i{rng.randrange(3000)}", None, rng.choice(["view", "click", "purchase"]), ts)
    n = len(c.items)
    assert abs(c._pop_max - c.pop[:n].max()) <= 1e-9 * c.pop[:n].max()
    best = c.index[max(c.items, key=lambda it: c.pop[c.index[it]])]
    assert c.pop_log(np.array([best]))[0] == 1.0


def test_organic_negatives_are_distinct_other_candidates_drawn_uniformly():
    from collections import Counter
    from types import SimpleNamespace

    from stream.stages.score import RetrieveStage
    stage = SimpleNamespace(rng=random.Random(5), negatives=4)
    seen = Counter()
    for _ in range(4000):
        picks = RetrieveStage._negatives(stage, 10, 3)
        assert len(set(picks)) == 4 and 3 not in picks and all(0 <= k < 10 for k in picks)
        seen.update(picks)
    assert set(seen) == set(range(10)) - {3}
    assert max(seen.values()) / min(seen.values()) < 1.15  # each other candidate ~16,000 / 9 times
    assert RetrieveStage._negatives(stage, 3, 0) in ([1, 2], [2, 1]) and RetrieveStage._negatives(stage, 1, 0) == []


def test_relations_fold_in_batches_at_a_bounded_staleness():
    from stream.core.relations import ItemRelations
    from stream.stages.score import Retrieval
    now = [0.0]
    ret = Retrieval(Catalog(), ItemRelations(half_life_s=0), batch=4, stale_s=0.1, clock=lambda: now[0])
    ret.fold("a", None, "view", [], 1)
    ret.fold("b", None, "view", ["a"], 2)
    assert ret.catalog.index == {"a": 0, "b": 1} and ret.relations.neighbours(0) == {}  # counted, not folded yet
    ret.settle()
    assert ret.relations.neighbours(0) == {}  # a read within stale_s sees the relations as they were
    now[0] = 0.2
    ret.settle()
    assert ret.relations.neighbours(0) == {1: 1.0} and ret.pending == []
    for k, item in enumerate("cdef"):  # a full batch folds at once, whatever the clock
        ret.fold(item, None, "view", ["b"], 3 + k)
    assert ret.pending == [] and set(ret.relations.neighbours(1)) == {0, 2, 3, 4, 5}
