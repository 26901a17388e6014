"""Soak the embedded broker: small messages at a fixed rate; the broker's CPU and RSS every 10 s.

Long closed-loop runs on the embedded stack stalled after a few minutes. This shows why:
producing alone costs Tansu a flat share of a core, but serving a consumer that tails the
topic costs it more and more as the partition grows (``--tail``), until the machine runs
out of cores. Every worker tails several topics.

    python -m load.soak_broker --rate 1500 --seconds 40 --linger-ms 5
    python -m load.soak_broker --rate 1500 --seconds 40 --linger-ms 50
    python -m load.soak_broker --rate 1500 --seconds 40 --keys -1     # a new key per message
    python -m load.soak_broker --rate 1500 --seconds 40 --keys 1000   # 1,000 keys, cycled
    python -m load.soak_broker --rate 1500 --seconds 40 --tail        # and a consumer tails the topic
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream.config import Settings
from stream.stack import Stack

TOPIC = "soak"


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m load.soak_broker", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1500.0, help="messages/s (default 1500)")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--linger-ms", type=float, default=5.0, help="producer linger (default 5, as the workers)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--size", type=int, default=120, help="message bytes (default 120, a click event)")
    ap.add_argument("--keys", type=int, default=0,
                    help="key messages with this many distinct keys, cycled (-1: a new key per message; "
                         "default 0: no key)")
    ap.add_argument("--tail", action="store_true", help="also tail the topic with a consumer, as workers do")
    opts = ap.parse_args(argv)
    stack = Stack(Settings.load(env={"STREAM_STACK_STATE_DIR": tempfile.mkdtemp(prefix="soak-")}))
    procs, _ = stack.up()
    boot, pid = procs["broker"].endpoint, procs["broker"].pid
    try:
        admin = AdminClient({"bootstrap.servers": boot})
        admin.create_topics([NewTopic(TOPIC, opts.partitions, 1)])[TOPIC].result()
        producer = Producer({"bootstrap.servers": boot, "linger.ms": opts.linger_ms})
        payload = b"x" * opts.size
        tailed, stop = [0], threading.Event()
        if opts.tail:
            consumer = Consumer({"bootstrap.servers": boot, "group.id": "soak", "enable.auto.commit": False})
            consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(opts.partitions)])

            def tail() -> None:
                while not stop.is_set():
                    tailed[0] += len(consumer.consume(1000, timeout=0.1))
                consumer.close()
            threading.Thread(target=tail, daemon=True).start()
        t0 = last = time.monotonic()
        cpu0, sent = cpu_seconds(pid), 0
        print(f"soak: {opts.rate:,.0f} msg/s, linger {opts.linger_ms:g} ms, {opts.partitions} partitions, "
              f"keys {opts.keys}, tail {opts.tail}, on the embedded broker (pid {pid})", flush=True)
        while (now := time.monotonic()) - t0 < opts.seconds:
            for _ in range(max(0, min(int((now - t0) * opts.rate) - sent, 500))):
                try:
                    key = None if opts.keys == 0 else str(sent if opts.keys < 0 else sent % opts.keys).encode()
                    producer.produce(TOPIC, payload, key=key, partition=sent % opts.partitions)
                    sent += 1
                except BufferError:
                    break
            producer.poll(0.001)
            if now - last >= 10:
                cpu1 = cpu_seconds(pid)
                print(f"t={now - t0:4.0f}s sent={sent:,} unacked={len(producer)} tailed={tailed[0]:,} "
                      f"broker_cpu={(cpu1 - cpu0) / (now - last) * 100:.0f}% rss={rss_mb(pid):.0f}MB", flush=True)
                cpu0, last = cpu1, now
            time.sleep(0.001)
        stop.set()
        left = producer.flush(30)
        print(f"done: {sent:,} sent, {left} undelivered after 30 s", flush=True)
        return 1 if left else 0
    finally:
        stack.down()


if __name__ == "__main__":
    sys.exit(main())
