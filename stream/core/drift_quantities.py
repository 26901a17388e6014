"""What the drift monitor watches in each stage's records: (quantity, kind, value) triples.

Variant-specific quantities carry the variant in brackets (``score[challenger]``), so a
canary's predictions and loss are compared with their own reference.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

NUM, CAT = "numeric", "categorical"
Extractor = Callable[[dict], Iterable[tuple[str, str, object]]]


def input_values(ev: dict) -> Iterable[tuple[str, str, object]]:
    """Input drift: event-type mix, category, device, country, price, dwell (missing counted)."""
    yield "event_type", CAT, ev.get("event_type")
    if ev.get("event_type") not in ("search", "recommend_request"):
        yield "category", CAT, ev.get("category")
        yield "price", NUM, ev.get("price")
    yield "device", CAT, ev.get("device")
    yield "country", CAT, ev.get("country")
    yield "dwell_ms", NUM, ev.get("dwell_ms")


def profile_values(p: dict) -> Iterable[tuple[str, str, object]]:
    """Profile drift: what users do and where and how concentrated their affinities are.
    Shares, not lifetime totals or running session lengths, which grow in any healthy stream
    (measured: they alarmed on a stationary run)."""
    counts = p.get("counts") or {}
    total = sum(counts.values())
    for etype in ("click", "add_to_cart", "purchase"):
        yield f"{etype}_share", NUM, counts.get(etype, 0) / total if total else None
    aff = p.get("affinity") or {}
    weight = sum(aff.values())
    top = max(aff, key=aff.get) if aff else None
    yield "top_category", CAT, top
    yield "affinity_top_share", NUM, (aff[top] / weight) if top and weight > 0 else None


def prediction_values(rec: dict) -> Iterable[tuple[str, str, object]]:
    """Prediction drift per variant: score distribution, what is served, short or empty lists."""
    v = rec.get("variant") or "champion"
    items = rec.get("items") or []
    yield f"list_length[{v}]", NUM, float(len(items))
    yield f"top_score[{v}]", NUM, max((i["score"] for i in items), default=None)
    for it in items:
        yield f"score[{v}]", NUM, it["score"]
        yield f"served_category[{v}]", CAT, it.get("category")


def concept_values(fb: dict) -> Iterable[tuple[str, str, object]]:
    """Concept drift per variant: the online log loss of each labelled example and the click rate."""
    v = fb.get("variant") or "champion"
    yield f"log_loss[{v}]", NUM, log_loss(fb["score"], fb["label"])
    yield f"label[{v}]", CAT, "click" if fb["label"] else "no_click"


def log_loss(p: float, y: int) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return -math.log(p) if y else -math.log(1 - p)


