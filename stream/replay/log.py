"""Read a timestamped interaction log (CSV or TSV) into events in event-time order.

The header names the columns ``user``, ``item``, ``timestamp`` and, optionally, ``rating``
and ``category``. Common spellings are recognised (``user_id``, ``item_id``, ``movie_id``,
``time``, ``ts``; RecBole's ``name:type`` headers); ``--map user=visitorid`` names another
column. Timestamps are unix seconds or milliseconds (detected from the first row's
magnitude). A row that cannot be read raises :class:`ReplayInputError` naming its line.

>>> import io
>>> rows = read_log(io.StringIO("user\\titem\\ttimestamp\\trating\\n1\\t10\\t5\\t4\\n2\\t11\\t3\\t2\\n"), name="x.tsv")
>>> [(r.user, r.item, r.ts_ms, r.positive(4.0), r.line) for r in rows]
[('2', '11', 3000, False, 3), ('1', '10', 5000, True, 2)]
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import IO, Iterable

from stream.errors import StreamError

#: accepted spellings of each column (after lower-casing and cutting RecBole's ``:type``)
ALIASES = {
    "user": ("user", "user_id", "userid", "visitorid", "visitor_id", "session_id", "customer_id"),
    "item": ("item", "item_id", "itemid", "movie_id", "movieid", "product_id", "article_id", "track_id"),
    "timestamp": ("timestamp", "time", "ts", "datetime_unix", "event_time"),
    "rating": ("rating", "score", "stars"),
    "category": ("category", "genre", "genres", "class", "category_id", "categoryid"),
}
REQUIRED = ("user", "item", "timestamp")
#: a timestamp above this is milliseconds (1e11 s is the year 5138)
MS_THRESHOLD = 100_000_000_000


class ReplayInputError(StreamError):
    """The log cannot be replayed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Interaction:
    user: str
    item: str
    ts_ms: int
    rating: float | None
    category: str | None
    line: int

    def positive(self, min_rating: float | None) -> bool:
        """A positive interaction: rated at least ``min_rating`` (every row counts without ratings)."""
        return min_rating is None or self.rating is None or self.rating >= min_rating


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """``["user=visitorid", ...]`` -> ``{"user": "visitorid"}``."""
    out = {}
    for pair in pairs:
        role, sep, column = pair.partition("=")
        if not sep or role not in ALIASES or not column:
            raise ReplayInputError(f"--map {pair!r}: expected ROLE=COLUMN with ROLE one of {', '.join(ALIASES)}")
        out[role] = column
    return out


def _columns(header: list[str], mapping: dict[str, str], name: str) -> dict[str, int]:
    plain = [h.strip().split(":")[0].lower() for h in header]
    cols: dict[str, int] = {}
    for role, aliases in ALIASES.items():
        if role in mapping:
            want = mapping[role]
            if want not in header and want.lower() not in plain:
                raise ReplayInputError(f"{name}:1: --map {role}={want}: no such column (header: {', '.join(header)})")
            cols[role] = header.index(want) if want in header else plain.index(want.lower())
            continue
        for a in aliases:
            if a in plain:
                cols[role] = plain.index(a)
                break
    missing = [r for r in REQUIRED if r not in cols]
    if missing:
        raise ReplayInputError(f"{name}:1: the header names no {' / '.join(missing)} column (header: "
                               f"{', '.join(header)}); name them, or map them with --map ROLE=COLUMN")
    return cols


def read_log(f: IO[str], name: str = "log", mapping: dict[str, str] | None = None,
             limit: int | None = None) -> list[Interaction]:
    """Every row as an :class:`Interaction`, sorted by time (ties keep file order)."""
    head = f.readline()
    if not head.strip():
        raise ReplayInputError(f"{name}:1: empty file (a header naming user, item, timestamp is required)")
    delim = "\t" if head.count("\t") >= head.count(",") else ","
    header = next(csv.reader([head], delimiter=delim))
    cols = _columns(header, mapping or {}, name)
    width = max(cols.values()) + 1
    rows: list[Interaction] = []
    scale = None
    iu, ii, it = cols["user"], cols["item"], cols["timestamp"]
    ir, ic = cols.get("rating"), cols.get("category")
    for n, rec in enumerate(csv.reader(f, delimiter=delim), start=2):
        if not rec or (len(rec) == 1 and not rec[0].strip()):
            continue
        if len(rec) < width:
            raise ReplayInputError(f"{name}:{n}: {len(rec)} fields, the header needs at least {width}")
        user, item = rec[iu].strip(), rec[ii].strip()
        if not user or not item:
            raise ReplayInputError(f"{name}:{n}: empty {'user' if not user else 'item'}")
        try:
            t = float(rec[it])
        except ValueError:
            raise ReplayInputError(f"{name}:{n}: timestamp {rec[it]!r} is not a number (unix seconds or ms)") from None
        if not math.isfinite(t) or t < 0:
            raise ReplayInputError(f"{name}:{n}: timestamp {rec[it]!r} is not a positive number")
        if scale is None:
            scale = 1 if t >= MS_THRESHOLD else 1000
        rating = None
        if ir is not None and rec[ir].strip():
            try:
                rating = float(rec[ir])
            except ValueError:
                raise ReplayInputError(f"{name}:{n}: rating {rec[ir]!r} is not a number") from None
        category = rec[ic].strip() or None if ic is not None else None
        rows.append(Interaction(user, item, int(t * scale), rating, category, n))
    if not rows:
        raise ReplayInputError(f"{name}: no rows after the header")
    rows.sort(key=lambda r: r.ts_ms)  # stable: ties keep file order
    return rows if limit is None else rows[:limit]


def open_log(path: str, mapping: dict[str, str] | None = None, limit: int | None = None) -> list[Interaction]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return read_log(f, path, mapping, limit)
    except OSError as exc:
        raise ReplayInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ReplayInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); CSV or TSV expected") \
            from None


def from_text(text: str, name: str = "log", **kw) -> list[Interaction]:  # noqa: ANN003
    return read_log(io.StringIO(text), name, **kw)
