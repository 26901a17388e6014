"""The Faust internals the worker relies on are checked, and the recovery reads true changelog ends."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from types import SimpleNamespace

import faust
import pytest
from faust.tables.recovery import Recovery
from yarl import URL

from stream.app import compat
from stream.errors import BrokerError, StreamError


def test_the_pinned_faust_passes_the_check_and_every_listed_function_exists():
    assert compat.check() is None
    assert faust.__version__ == compat.FAUST_VERSION
    for name in compat.UPSTREAM:
        assert len(compat.UPSTREAM[name]) == 64 and compat.source_hash(name) == compat.UPSTREAM[name]


def test_another_version_or_changed_upstream_code_is_refused(monkeypatch):
    monkeypatch.setattr(faust, "__version__", "0.15.4")
    assert "0.15.4" in compat.check()
    with pytest.raises(StreamError, match="faust-streaming==0.15.3"):
        compat.require()
    monkeypatch.setattr(faust, "__version__", compat.FAUST_VERSION)

    async def _build_offsets(self, consumer, tps, destination, title):  # noqa: ANN001, ANN202 - a changed upstream
        return None
    monkeypatch.setattr(Recovery, "_build_offsets", _build_offsets)
    assert "Recovery._build_offsets" in compat.check()
    monkeypatch.delattr(Recovery, "_build_offsets")
    assert "Recovery._build_offsets (missing)" in compat.check()


class TP(SimpleNamespace):
    def __hash__(self) -> int:
        return hash((self.topic, self.partition))


def recovery_stub(active: dict) -> SimpleNamespace:
    """What Faust's _build_highwaters and the patch read of the Recovery service."""
    return SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(broker=[URL("kafka://127.0.0.1:9092")])),
                           log=logging.getLogger("test"), _highwater_logtable=lambda h, title: "",
                           active_offsets=active, standby_offsets={})


class Consumer:
    def __init__(self, reported: dict) -> None:
        self.reported = reported

    async def highwaters(self, *tps):  # noqa: ANN002, ANN201 - Faust's consumer API
        return {tp: self.reported[tp] for tp in tps}


def run_patched(monkeypatch, reported: dict, true_ends: dict, active: dict) -> tuple[Counter, list[str], list]:
    monkeypatch.setattr(Recovery, "_build_highwaters", Recovery._build_highwaters)  # restored afterwards
    lost: list[str] = []
    asked: list = []

    def read_ends(bootstrap: str, ends: dict) -> dict:
        asked.append((bootstrap, dict(ends)))
        return {tp: max(end, true_ends.get(tp, end)) for tp, end in ends.items()}
    compat.install_true_changelog_ends(lost.append, read_ends)
    destination: Counter = Counter()
    asyncio.run(Recovery._build_highwaters(recovery_stub(active), Consumer(reported), set(reported), destination,
                                           "active"))
    return destination, lost, asked


def test_the_recovery_reads_to_the_true_end_not_the_reported_one(monkeypatch):
    a, b, empty = TP(topic="cl", partition=0), TP(topic="cl", partition=1), TP(topic="cl", partition=2)
    destination, lost, asked = run_patched(monkeypatch, {a: 1, b: 5, empty: None}, {("cl", 0): 8}, {a: 7})
    assert asked == [("127.0.0.1:9092", {("cl", 0): 1, ("cl", 1): 5, ("cl", 2): 0})]
    assert destination == {a: 7, b: 4, empty: -1}  # Faust's "last offset": end - 1
    assert lost == []  # offset 7 was read and is there


def test_an_offset_above_the_true_end_is_a_changelog_that_lost_records(monkeypatch):
    a = TP(topic="cl", partition=0)
    destination, lost, _ = run_patched(monkeypatch, {a: 3}, {}, {a: 40})
    assert destination[a] == 2
    assert len(lost) == 1 and "cl[0] ends at offset 2" in lost[0] and "read offset 40" in lost[0]
    assert "stream topics create" in lost[0]


def test_a_broker_that_does_not_answer_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(Recovery, "_build_highwaters", Recovery._build_highwaters)
    lost: list[str] = []

    def read_ends(bootstrap: str, ends: dict) -> dict:
        raise BrokerError("reading the last batch of cl[0] took over 10s")
    compat.install_true_changelog_ends(lost.append, read_ends)
    a = TP(topic="cl", partition=0)
    asyncio.run(Recovery._build_highwaters(recovery_stub({}), Consumer({a: 3}), {a}, Counter(), "active"))
    assert lost == ["recovery could not read the changelog ends: reading the last batch of cl[0] took over 10s"]
