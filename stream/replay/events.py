"""A log's interactions as clickstream events: each evaluated positive is preceded by a
``recommend_request`` of its user at the same event time.

>>> from stream.replay.log import from_text
>>> rows = from_text("user,item,timestamp,rating\\n1,a,1,5\\n1,b,2,2\\n1,c,3,4\\n")
>>> [(e["event_type"], e["item_id"]) for e in to_events(rows, 4.0)]
[('click', 'a'), ('view', 'b'), ('recommend_request', None), ('click', 'c')]
"""

from __future__ import annotations

from typing import Iterator

from stream.replay.log import Interaction

EMPTY = {"session_id": None, "price": None, "dwell_ms": None, "device": None, "country": None, "rec_id": None}


def request_id(r: Interaction) -> str:
    return f"q{r.line}"


def to_events(rows: list[Interaction], min_rating: float | None) -> Iterator[dict]:
    """Events in time order: the interaction (``click`` if positive, else ``view``), preceded by
    a request for the user's list when the protocol evaluates it."""
    seen: set[str] = set()
    for r in rows:
        positive = r.positive(min_rating)
        if positive and r.user in seen:
            yield {"event_id": request_id(r), "user_id": r.user, "event_type": "recommend_request",
                   "timestamp": r.ts_ms, "item_id": None, "category": None, **EMPTY}
        seen.add(r.user)
        yield {"event_id": f"r{r.line}", "user_id": r.user, "event_type": "click" if positive else "view",
               "timestamp": r.ts_ms, "item_id": r.item, "category": r.category, **EMPTY}
