"""Closed-loop simulator: simulated users browse, ask for recommendations and click them.

Users are those of a :class:`~stream.workload.Workload`. They produce browsing events
and ``recommend_request`` events to clicks.v1; the simulator reads recommendations.v1,
and for every served item the user clicks it with probability ``click_scale x`` the
user's liking for it: with item-level tastes (``Workload(tastes=D)``, what the demo
uses) the workload's :meth:`~stream.workload.Workload.affinity` for that item, so a
list is rewarded for the items it holds, as on a real log; without tastes, the user's
preference for the item's category (and now and then the user clicks something else).
Recommendations for users of other workloads (other traffic on the same stack) are
counted as ``foreign`` and left alone. With ``batch_ms`` the simulated app sends its events in batch
envelopes, one per partition at most every ``batch_ms`` (fewer, larger Kafka messages,
as a mobile SDK does), instead of one message per event. Knowing the ground truth, it
reports the CTR of what was served, the expected CTR of a random and of an ideal list,
and the CTR over time (and, with tastes, of a list of the most popular items).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from stream.adapters.kafka import client_conf
from stream.adapters.output import Output
from stream.partitioning import partition_for
from stream.serde import SchemaRegistry
from stream.workload import Workload


@dataclass
class Window:
    start: float
    served: int = 0
    clicks: int = 0
    expected: float = 0.0  # sum of true click probabilities of served items
    versions: set[int] = field(default_factory=set)

    @property
    def ctr(self) -> float:
        return self.clicks / self.served if self.served else 0.0


@dataclass
class SimReport:
    events: int = 0
    requests: int = 0
    recommendations: int = 0
    served: int = 0
    clicks: int = 0
    expected: float = 0.0
    other_clicks: int = 0
    random_ctr: float = 0.0
    ideal_ctr: float = 0.0
    popular_ctr: float | None = None  # with tastes: the CTR of the 10 most browsed items
    foreign: int = 0  # recommendations for users who are not this simulator's
    windows: list[Window] = field(default_factory=list)

    @property
    def ctr(self) -> float:
        return self.clicks / self.served if self.served else 0.0


class ClosedLoop:
    def __init__(self, bootstrap: str, workload: Workload, *, rate: float = 1000.0, request_share: float = 0.1,
                 click_scale: float = 0.6, other_click: float = 0.02, k: int = 10, window_s: float = 5.0,
                 partitions: int = 4, seed: int = 0, registry: SchemaRegistry | None = None,
                 batch_ms: float = 0.0) -> None:
        self.wl, self.rate, self.request_share = workload, rate, request_share
        self.click_scale, self.other_click, self.k, self.window_s = click_scale, other_click, k, window_s
        self.partitions, self.batch_s = partitions, batch_ms / 1000
        #: per partition: (monotonic time of the first pending event, pending events)
        self._pending: dict[int, tuple[float, list[dict]]] = {}
        self.rng = random.Random(seed)
        self.reg = registry or SchemaRegistry.default()
        self.out = Output(bootstrap, linger_ms=5, client_id="simulator")
        self.consumer = Consumer(client_conf(bootstrap, **{"group.id": f"simulator-{seed}",
                                  "enable.auto.commit": False}))
        self.consumer.assign([TopicPartition("recommendations.v1", p, OFFSET_END) for p in range(partitions)])
        self.report = SimReport()
        if self.wl.tastes:
            truth = self.wl.ground_truth_ctr(k)
            self.report.random_ctr, self.report.ideal_ctr = click_scale * truth["random"], click_scale * truth["ideal"]
            self.report.popular_ctr = click_scale * truth["popular"]
        else:
            prefs = [self.wl.user_prefs(f"{self.wl.user_prefix}{u}") for u in range(self.wl.users)]
            item_share = [len(items) / self.wl.items for items in self.wl.cat_items]
            self.report.random_ctr = click_scale * sum(sum(p * s for p, s in zip(pr, item_share))
                                                       for pr in prefs) / len(prefs)
            self.report.ideal_ctr = click_scale * sum(max(pr) for pr in prefs) / len(prefs)

    def p_click(self, user_id: str, category: str | None, at_ms: int | None = None, item: str | None = None) -> float:
        """The true click probability of a served item; with a drift scenario, of the
        preferences at ``at_ms`` (default: now). 0 for a user who is not this workload's."""
        if self.wl.user_index(user_id) is None:
            return 0.0
        if self.wl.tastes:
            t = int(time.time() * 1000) if at_ms is None else at_ms
            return self.click_scale * self.wl.affinity(user_id, item or "", t if self.wl.scenario else None)
        if not category:
            return 0.0
        if self.wl.scenario is not None:
            prefs = self.wl.click_prefs(user_id, int(time.time() * 1000) if at_ms is None else at_ms)
        else:
            prefs = self.wl.user_prefs(user_id)
        return self.click_scale * float(prefs[int(category[1:])])

    def _send(self, ev: dict) -> None:
        part = partition_for(ev["user_id"], self.partitions)
        self.report.events += 1
        if self.batch_s > 0:
            self._pending.setdefault(part, (time.monotonic(), []))[1].append(ev)
            return
        self.out.produce("clicks.v1", self.reg.encode_click(ev), key=ev["user_id"].encode(), partition=part)

    def _send_batches(self, older_than: float = 0.0) -> None:
        """Envelopes for the partitions whose first pending event waited at least ``older_than`` s."""
        now = time.monotonic()
        for part in [p for p, (since, _) in self._pending.items() if now - since >= older_than]:
            events = self._pending.pop(part)[1]
            self.out.produce("clicks.v1", self.reg.encode_envelope(events, "stream-simulator"),
                             key=events[0]["user_id"].encode(), partition=part)

    def _window(self, now: float) -> Window:
        if not self.report.windows or now - self.report.windows[-1].start >= self.window_s:
            self.report.windows.append(Window(now))
        return self.report.windows[-1]

    def _answer(self, rec: dict) -> None:
        """The user looks at a recommendation and maybe clicks."""
        r, user = self.report, rec["user_id"]
        if self.wl.user_index(user) is None:
            r.foreign += 1
            return
        w = self._window(time.monotonic())
        now_ms = int(time.time() * 1000)
        r.recommendations += 1
        w.versions.add(rec["model_version"])
        for item in rec["items"]:
            p = self.p_click(user, item["category"], now_ms, item["item_id"])
            r.served += 1
            w.served += 1
            r.expected += p
            w.expected += p
            if self.rng.random() < p:
                r.clicks += 1
                w.clicks += 1
                self._click(user, item["item_id"], item["category"], rec["rec_id"])
        if self.rng.random() < self.other_click:  # something else caught the user's eye
            r.other_clicks += 1
            ev = self.wl.event(int(user[len(self.wl.user_prefix):]), "click", at_ms=int(time.time() * 1000))
            self._send(ev)

    def _click(self, user: str, item: str, category: str | None, rec_id: str) -> None:
        ev = self.wl.event(int(user[len(self.wl.user_prefix):]), "click", at_ms=int(time.time() * 1000))
        ev.update(item_id=item, category=category, rec_id=rec_id)
        self._send(ev)

    def run(self, seconds: float, progress: Callable[[SimReport], None] | None = None) -> SimReport:
        t0 = time.monotonic()
        sent = 0
        next_progress = t0 + self.window_s
        while (now := time.monotonic()) - t0 < seconds:
            due = int((now - t0) * self.rate) - sent
            for _ in range(max(0, min(due, 500))):
                now_ms = int(time.time() * 1000)
                u = self.wl.pick_user(now_ms)
                etype = "recommend_request" if self.rng.random() < self.request_share else None
                ev = self.wl.event(u, etype, at_ms=now_ms)
                if etype:
                    self.report.requests += 1
                self._send(ev)
                sent += 1
            self._send_batches(self.batch_s)
            self.out.poll()
            for msg in self.consumer.consume(500, timeout=0.01):
                if msg.error() is None:
                    self._answer(self.reg.decode("Recommendation", msg.value()))
            if progress is not None and now >= next_progress:
                next_progress += self.window_s
                progress(self.report)
        self._send_batches()
        self.out.flush(30)
        self.consumer.close()
        del self.out  # destroy the producer now, while the broker is still there
        return self.report
