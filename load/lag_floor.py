"""The broker's own event-time lag: a bare consumer, no Faust, no work.

The client is the worker's: librdkafka (confluent-kafka), as the worker reads clicks.v1
(stream.app.native); ``--client aiokafka`` measures Faust's own client for comparison.

Reads ``--events`` events of ``clicks.v1`` (single events or batch envelopes) from the
start of every partition, as they are produced, and records for each event the time from
its event timestamp to the moment the consumer got it. That is the floor under the
worker's event-time lag on the same broker and load: producer lingers, the broker's own
fetch latency, one fetch round trip. Prints one ``RESULT {json}`` line (lags in ms: all
steady windows, and each 1 s window of consume time).

    python -m load.lag_floor --bootstrap 127.0.0.1:9092 --events 80000 --timeout 60 [--fetch-wait-ms 20] \
        [--client librdkafka|aiokafka]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import defaultdict

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer
from confluent_kafka import TopicPartition as RdTopicPartition

from stream.serde import CLICK_BATCH, SchemaRegistry
from stream.topology import Topology

from load.baselines import RESULT_PREFIX


def quantiles(values: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(values, [50, 99]) if values else (0.0, 0.0)
    return {"p50": round(float(p50), 1), "p99": round(float(p99), 1)}


def measure(bootstrap: str, topic: str, partitions: int, events: int, timeout_s: float,
            fetch_wait_ms: int, client: str = "librdkafka") -> dict:
    if client == "librdkafka":
        windows = _measure_rdkafka(bootstrap, topic, partitions, events, timeout_s, fetch_wait_ms)
    else:
        windows = asyncio.run(_measure(bootstrap, topic, partitions, events, timeout_s, fetch_wait_ms))
    return {"client": client, **_summary(windows, fetch_wait_ms)}


def _record(reg: SchemaRegistry, value: bytes, windows: dict[int, list[float]]) -> int:
    now_ms = time.time() * 1000
    kind, decoded = reg.decode_clicks(value)
    evs = decoded["events"] if kind == CLICK_BATCH else [decoded]
    windows[int(now_ms // 1000)].extend(now_ms - e["timestamp"] for e in evs)
    return len(evs)


def _measure_rdkafka(bootstrap: str, topic: str, partitions: int, events: int, timeout_s: float,
                     fetch_wait_ms: int) -> dict[int, list[float]]:
    """The native reader's client and settings (stream.app.native), polled in a plain loop."""
    reg = SchemaRegistry.default()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lag-floor", "enable.auto.commit": False,
                         "enable.partition.eof": False, "fetch.wait.max.ms": fetch_wait_ms, "fetch.min.bytes": 1})
    windows: dict[int, list[float]] = defaultdict(list)
    seen, deadline = 0, time.monotonic() + timeout_s
    try:
        consumer.assign([RdTopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        print("ready", file=sys.stderr, flush=True)
        while seen < events and time.monotonic() < deadline:
            # consume(n, t) waits for n messages or t seconds: take what is there, else wait for one
            msgs = consumer.consume(500, 0)
            if not msgs:
                m = consumer.poll(0.05)
                msgs = [m] if m is not None else []
            for m in msgs:
                if m.error() is None:
                    seen += _record(reg, m.value(), windows)
    finally:
        consumer.close()
    return windows


async def _measure(bootstrap: str, topic: str, partitions: int, events: int, timeout_s: float,
                   fetch_wait_ms: int) -> dict[int, list[float]]:
    """Faust's client, as Faust drives it (getmany)."""
    reg = SchemaRegistry.default()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                fetch_max_wait_ms=fetch_wait_ms)
    await consumer.start()
    windows: dict[int, list[float]] = defaultdict(list)
    seen, deadline = 0, time.monotonic() + timeout_s
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        print("ready", file=sys.stderr, flush=True)  # the parent starts producing now
        while seen < events and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=50)
            for records in batches.values():
                for m in records:
                    seen += _record(reg, m.value, windows)
    finally:
        await consumer.stop()
    return windows


def _summary(windows: dict[int, list[float]], fetch_wait_ms: int) -> dict:
    seen = sum(len(w) for w in windows.values())
    steady = [windows[k] for k in sorted(windows)][1:-1]  # whole windows only
    p99s = [quantiles(w)["p99"] for w in steady]
    return {"events": seen, "fetch_wait_ms": fetch_wait_ms, **{f"lag_{k}_ms": v for k, v in
            quantiles([x for w in steady for x in w]).items()},
            "window_p99_ms_median": round(float(np.median(p99s)), 1) if p99s else None,
            "window_p99_ms": p99s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", default="clicks.v1")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--fetch-wait-ms", type=int, default=20,
                   help="the fetch wait of the worker it stands for (faust.native_fetch_wait_ms with "
                        "librdkafka, faust.fetch_max_wait_ms with aiokafka)")
    p.add_argument("--client", choices=("librdkafka", "aiokafka"), default="librdkafka",
                   help="librdkafka: the worker's client for clicks.v1; aiokafka: Faust's own, for comparison")
    args = p.parse_args(argv)
    result = measure(args.bootstrap, args.topic, Topology.load().topic(args.topic).partitions, args.events,
                     args.timeout, args.fetch_wait_ms, args.client)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0 if result["events"] >= args.events else 1


if __name__ == "__main__":
    sys.exit(main())
