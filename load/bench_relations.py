"""Benchmark: memory of the retrieval state at N distinct items, and the cost of one update.

Fills a Catalog and ItemRelations the way the retrieve stage does (each event pairs its item
with the user's 20 recent items), until every item's row is full (``width`` neighbours),
then reports the process's resident memory against the empty process, per item, and the
time per event update.

    python -m load.bench_relations --items 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from stream.core.catalog import Catalog
from stream.core.relations import ItemRelations


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--width", type=int, default=80)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    base = rss_bytes()
    cat, rel = Catalog(max_items=args.items), ItemRelations(width=args.width, window=args.window)
    names = [f"item-{i:08d}" for i in range(args.items)]
    t0 = time.perf_counter()
    events, ts = 0, 1_700_000_000_000
    # every item once, with a random history: rows fill from both ends of each pair
    target = args.items * args.width // (2 * args.window) + args.items
    recent: list[int] = []
    while events < target:
        item = names[events] if events < args.items else names[rng.randrange(args.items)]
        j = cat.update(item, None, "click", ts)
        rel.update(j, recent, 1.0, ts)
        recent.insert(0, j)
        del recent[args.window:]
        if rng.random() < 0.05:
            recent = [rng.randrange(len(cat.items)) for _ in range(args.window)]  # another user
        events += 1
        ts += 10
        if events % 500_000 == 0:
            print(f"bench_relations: {events:,}/{target:,} events", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    full = int((rel.row_fill() == args.width).sum())
    used = rss_bytes() - base
    out = {"items": len(cat.items), "rows_full": full, "width": args.width, "window": args.window,
           "events": events, "update_us": round(seconds / events * 1e6, 2),
           "rss_bytes": used, "rss_per_item": round(used / len(cat.items)),
           "relations_nbytes_per_item": round(rel.nbytes() / len(rel)),
           "rss_gib": round(used / 2**30, 3)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
