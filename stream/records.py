"""Record classes, one per Avro schema, field by field (a contract test checks this).

They are plain slotted dataclasses: ``ClickEvent(**decoded_dict)`` builds one and
``dataclasses.asdict`` (or :func:`to_dict`) gives the dict fastavro writes.

>>> e = ClickEvent(event_id="e1", user_id="u1", event_type="view", timestamp=1)
>>> to_dict(e)["category"] is None
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(slots=True)
class ClickEvent:
    event_id: str
    user_id: str
    event_type: str
    timestamp: int
    session_id: Optional[str] = None
    item_id: Optional[str] = None
    category: Optional[str] = None
    price: Optional[float] = None
    dwell_ms: Optional[int] = None
    device: Optional[str] = None
    country: Optional[str] = None
    rec_id: Optional[str] = None


@dataclass(slots=True)
class ClickBatch:
    batch_id: str
    producer: str
    created: int
    events: list[ClickEvent]


@dataclass(slots=True)
class DeadLetter:
    stage: str
    error_class: str
    reason: str
    message: str
    source_topic: str
    source_partition: int
    source_offset: int
    raw: bytes
    failed_at: int
    batch_index: Optional[int] = None
    key: Optional[bytes] = None


@dataclass(slots=True)
class UserProfile:
    user_id: str
    version: int
    first_seen: int
    last_seen: int
    counts: dict[str, int]
    affinity: dict[str, float]
    affinity_at: int
    sessions: int
    session_start: int
    session_events: int
    session_total_ms: int
    last_items: list[str]
    spend: float
    source_partition: int
    source_offset: int
    source_index: int
    consumed: bytes = b""


@dataclass(slots=True)
class UserState:
    profile: UserProfile
    seen_ids: bytes
    seen_ts: bytes


@dataclass(slots=True)
class ScoredItem:
    item_id: str
    score: float
    source: str
    category: Optional[str] = None
    features: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Recommendation:
    rec_id: str
    user_id: str
    request_event_id: str
    created: int
    model_name: str
    model_version: int
    variant: str
    items: list[ScoredItem]
    features: dict[str, float]
    candidates: int


@dataclass(slots=True)
class Feedback:
    rec_id: str
    user_id: str
    item_id: str
    rank: int
    label: int
    score: float
    model_name: str
    model_version: int
    variant: str
    features: dict[str, float]
    served_at: int
    resolved_at: int
    category: Optional[str] = None


@dataclass(slots=True)
class ModelRelease:
    model_name: str
    version: int
    family: str
    created: int
    examples_seen: int
    metrics: dict[str, float]
    blob_key: str
    blob_sha256: str
    blob_hmac: str
    parent_version: Optional[int] = None
    blob: Optional[bytes] = None


@dataclass(slots=True)
class DriftReport:
    stage: str
    quantity: str
    statistic: str
    value: float
    threshold: float
    alarm: bool
    window_start: int
    window_end: int
    sample_size: int
    reference_size: int
    reference_id: str
    late_events: int = 0
    calibrated: bool = True


@dataclass(slots=True)
class StageMetrics:
    stage: str
    worker: str
    emitted_at: int
    interval_s: float
    events_in: int
    events_out: int
    rejected: int
    duplicates: int
    replays: int
    errors: int
    messages: int
    batch_size_mean: float
    processing_ms: dict[str, float]
    event_lag_ms: dict[str, float]
    consumer_lag: int
    rss_bytes: int
    inputs: dict[str, float]
    outputs: dict[str, float]


@dataclass(slots=True)
class Alert:
    alert_id: str
    name: str
    severity: str
    stage: str
    message: str
    created: int
    evidence: dict[str, str]
    model_name: Optional[str] = None


@dataclass(slots=True)
class ControlCommand:
    command_id: str
    model_name: str
    action: str
    issued_at: int
    issued_by: str
    version: Optional[int] = None
    args: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Interaction:
    item_id: str
    event_type: str
    timestamp: int
    recent: list[str]
    category: Optional[str] = None


@dataclass(slots=True)
class Interactions:
    origin: str
    events: list[Interaction]


#: schema name -> class, for every record schema
RECORD_CLASSES: dict[str, type] = {cls.__name__: cls for cls in (
    ClickEvent, ClickBatch, DeadLetter, UserProfile, UserState, ScoredItem, Recommendation, Feedback,
    ModelRelease, DriftReport, StageMetrics, Alert, ControlCommand, Interaction, Interactions)}


def to_dict(record: Any) -> dict:
    """The dict fastavro writes (nested records become dicts too)."""
    return dataclasses.asdict(record)


def from_dict(cls: type, data: dict) -> Any:
    """Build ``cls`` from a decoded dict, building nested record classes too."""
    if cls is ClickBatch:
        return ClickBatch(**{**data, "events": [ClickEvent(**e) for e in data["events"]]})
    if cls is UserState:
        return UserState(**{**data, "profile": UserProfile(**data["profile"])})
    if cls is Recommendation:
        return Recommendation(**{**data, "items": [ScoredItem(**i) for i in data["items"]]})
    if cls is Interactions:
        return Interactions(**{**data, "events": [Interaction(**e) for e in data["events"]]})
    return cls(**data)
