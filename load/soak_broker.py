"""Soak the embedded broker: small messages at a fixed rate; the broker's CPU and RSS every 10 s.

Long closed-loop runs on the embedded stack stalled after a few minutes. This shows why:
Tansu's CPU per produce request grows with what it already stores, so a steady rate of
small produce requests costs it more and more until the machine runs out of cores.

    python -m load.soak_broker --rate 1500 --seconds 40 --linger-ms 5
    python -m load.soak_broker --rate 1500 --seconds 40 --linger-ms 50
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from confluent_kafka import Producer
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
    opts = ap.parse_args(argv)
    stack = Stack(Settings.load(env={"STREAM_STACK_STATE_DIR": tempfile.mkdtemp(prefix="soak-")}))
    procs, _ = stack.up()
    boot, pid = procs["broker"].endpoint, procs["broker"].pid
    try:
        admin = AdminClient({"bootstrap.servers": boot})
        admin.create_topics([NewTopic(TOPIC, opts.partitions, 1)])[TOPIC].result()
        producer = Producer({"bootstrap.servers": boot, "linger.ms": opts.linger_ms})
        payload = b"x" * opts.size
        t0 = last = time.monotonic()
        cpu0, sent = cpu_seconds(pid), 0
        print(f"soak: {opts.rate:,.0f} msg/s, linger {opts.linger_ms:g} ms, {opts.partitions} partitions "
              f"on the embedded broker (pid {pid})", flush=True)
        while (now := time.monotonic()) - t0 < opts.seconds:
            for _ in range(max(0, min(int((now - t0) * opts.rate) - sent, 500))):
                try:
                    producer.produce(TOPIC, payload, partition=sent % opts.partitions)
                    sent += 1
                except BufferError:
                    break
            producer.poll(0.001)
            if now - last >= 10:
                cpu1 = cpu_seconds(pid)
                print(f"t={now - t0:4.0f}s sent={sent:,} unacked={len(producer)} "
                      f"broker_cpu={(cpu1 - cpu0) / (now - last) * 100:.0f}% rss={rss_mb(pid):.0f}MB", flush=True)
                cpu0, last = cpu1, now
            time.sleep(0.001)
        left = producer.flush(30)
        print(f"done: {sent:,} sent, {left} undelivered after 30 s", flush=True)
        return 1 if left else 0
    finally:
        stack.down()


if __name__ == "__main__":
    sys.exit(main())
