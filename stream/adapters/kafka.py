"""Kafka admin, producing and reading with confluent-kafka (outside Faust).

Used by the CLI, the load generator and tests. Broker failures become
:class:`~stream.errors.BrokerError`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream.errors import BrokerError
from stream.topology import Topic, Topology


#: librdkafka settings for clients inside a worker: connection failures reach the caller (an
#: error callback or an error message, logged rate-limited there), not stderr line by line
QUIET = {"log_level": 2, "log.connection.close": False}

#: librdkafka security settings every client of this process uses (:func:`use_security`)
_SECURITY: dict[str, str] = {}


def security_conf(k) -> dict[str, str]:  # noqa: ANN001 - stream.config.KafkaSettings
    """The librdkafka settings of ``kafka.security_protocol`` and its credentials.

    >>> from stream.config import KafkaSettings
    >>> sorted(security_conf(KafkaSettings()).items())
    []
    >>> c = security_conf(KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
    ...                                 sasl_username="stream", sasl_password="pw", ssl_ca_file="/ca.pem"))
    >>> c["security.protocol"], c["sasl.mechanisms"], c["sasl.username"], c["ssl.ca.location"]
    ('SASL_SSL', 'SCRAM-SHA-512', 'stream', '/ca.pem')
    """
    if k.security_protocol == "PLAINTEXT":
        return {}
    conf = {"security.protocol": k.security_protocol}
    if k.security_protocol.startswith("SASL_"):
        conf.update({"sasl.mechanisms": k.sasl_mechanism, "sasl.username": k.sasl_username,
                     "sasl.password": k.sasl_password})
    if k.security_protocol.endswith("SSL"):
        for key, path in (("ssl.ca.location", k.ssl_ca_file), ("ssl.certificate.location", k.ssl_cert_file),
                          ("ssl.key.location", k.ssl_key_file)):
            if path:
                conf[key] = path
    return conf


def use_security(k) -> None:  # noqa: ANN001 - stream.config.KafkaSettings
    """Every Kafka client this process makes from now on connects with ``k``'s security settings."""
    _SECURITY.clear()
    _SECURITY.update(security_conf(k))


#: librdkafka's own log lines go through this logger (the project's logfmt handler, whose
#: Repeats filter lets a few through per minute), not straight to stderr: an unreachable
#: broker printed ~190 of them before the command's one-line error
RDKAFKA_LOG = logging.getLogger("rdkafka")


def client_conf(bootstrap: str, **conf: object) -> dict:
    """A librdkafka configuration: the bootstrap servers, this process's security settings, its
    log lines routed through :data:`RDKAFKA_LOG`, then ``conf``."""
    return {"bootstrap.servers": bootstrap, "logger": RDKAFKA_LOG, **_SECURITY, **conf}


def admin(bootstrap: str) -> AdminClient:
    return AdminClient(client_conf(bootstrap))


def existing_topics(bootstrap: str, timeout: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count, as the broker reports it."""
    try:
        md = admin(bootstrap).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"broker {bootstrap} did not answer a metadata request: {exc}") from exc
    return {name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__")}


@dataclass(frozen=True)
class CreateResult:
    topic: str
    created: bool
    note: str = ""


def topic_id(bootstrap: str, topic: str, timeout: float = 10.0) -> str | None:
    """The broker's id of a topic (Kafka 2.8+ and Tansu give one): a topic deleted and created
    again, or created on a broker that lost its data, has a new id. None when the broker does not
    say (an old broker) or does not answer in time."""
    from confluent_kafka import TopicCollection  # noqa: PLC0415
    client = admin(bootstrap)  # held until the answer is in: a collected client cancels its futures
    try:
        futures = client.describe_topics(TopicCollection([topic]), request_timeout=timeout)
        found = futures[topic].result(timeout)
    except Exception:  # noqa: BLE001 - librdkafka raises KafkaException and others for "unsupported"
        return None
    tid = getattr(found, "topic_id", None)
    return str(tid) if tid is not None else None


def create_topics(bootstrap: str, topics: list[Topic], timeout: float = 15.0) -> list[CreateResult]:
    """Create the given topics; existing ones are left alone (idempotent)."""
    have = existing_topics(bootstrap, timeout)
    results: list[CreateResult] = []
    wanted = []
    for t in topics:
        if t.name in have:
            note = "" if have[t.name] == t.partitions else \
                f"exists with {have[t.name]} partitions, topology says {t.partitions}"
            results.append(CreateResult(t.name, False, note))
        else:
            wanted.append(NewTopic(t.name, t.partitions, 1, config=t.kafka_config()))
    if wanted:
        client = admin(bootstrap)  # keep a reference until the futures resolve
        futures = client.create_topics(wanted, operation_timeout=timeout, request_timeout=timeout)
        for name, fut in futures.items():
            try:
                fut.result(timeout=timeout)
                results.append(CreateResult(name, True))
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    results.append(CreateResult(name, False))
                else:
                    raise BrokerError(f"cannot create topic {name}: {err}") from exc
    order = {t.name: i for i, t in enumerate(topics)}
    return sorted(results, key=lambda r: order[r.topic])


def ensure_topology(bootstrap: str, topology: Topology) -> list[CreateResult]:
    return create_topics(bootstrap, list(topology.topics.values()))


def producer(bootstrap: str, **overrides: object) -> Producer:
    conf = client_conf(bootstrap, **{"linger.ms": 5, "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000, "enable.idempotence": False})
    conf.update(overrides)
    return Producer(conf)


def flush(p: Producer, timeout: float = 30.0) -> None:
    left = p.flush(timeout)
    if left:
        raise BrokerError(f"{left} message(s) not delivered within {timeout:.0f}s")


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...]


def _partitions(consumer: Consumer, topic: str, timeout: float = 10.0) -> list[int]:
    """The partitions of an existing topic, sorted; BrokerError if it does not exist or the broker is silent."""
    try:
        md = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"broker did not answer a metadata request: {exc}") from exc
    tmeta = md.topics.get(topic)
    if tmeta is None or tmeta.error is not None or not tmeta.partitions:
        raise BrokerError(f"topic {topic} does not exist on the broker (run `stream topics create`)")
    return sorted(tmeta.partitions)


def read(bootstrap: str, topic: str | list[str], *, from_beginning: bool = True, max_messages: int | None = None,
         idle_timeout: float | None = None, partitions: int | None = None,
         deadline: float | None = None, since_ms: int | None = None,
         idle_yield: bool = False) -> Iterator[Message | None]:
    """Read one topic or several by partition assignment (no consumer group, no commits).

    Starts at the beginning, at the end (``from_beginning=False``), or at the first record
    written at or after ``since_ms`` (epoch ms). Stops after ``max_messages``, after
    ``idle_timeout`` seconds without a message, or at ``deadline`` (a ``time.monotonic()``
    value); otherwise follows the topics. With ``idle_yield`` a poll that found nothing yields
    None (a live view redraws then, records or not).
    """
    consumer = Consumer(client_conf(bootstrap, **{"group.id": "stream-tail", "enable.auto.commit": False,
                         "enable.partition.eof": False, "fetch.wait.max.ms": 100}))
    try:
        topics = [topic] if isinstance(topic, str) else list(topic)
        counts = {name: partitions if partitions is not None else len(_partitions(consumer, name))
                  for name in topics}
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        tps = [TopicPartition(name, p, start) for name, n in counts.items() for p in range(n)]
        if since_ms is not None:
            try:  # the first offset at or after the time (-1: none yet: the end)
                found = consumer.offsets_for_times([TopicPartition(t.topic, t.partition, since_ms) for t in tps],
                                                   timeout=10)
                tps = [TopicPartition(t.topic, t.partition, t.offset if t.offset >= 0 else OFFSET_END)
                       for t in found]
            except KafkaException:  # a broker without time lookups: from the beginning, filtered below
                tps = [TopicPartition(t.topic, t.partition, OFFSET_BEGINNING) for t in tps]
        consumer.assign(tps)
        seen, last = 0, time.monotonic()
        while max_messages is None or seen < max_messages:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if idle_timeout is not None and now - last >= idle_timeout:
                return
            msg = consumer.poll(0.2)
            if msg is None:
                if idle_yield:
                    yield None
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise BrokerError(f"reading {msg.topic() or topic}: {msg.error()}")
            last = time.monotonic()
            if since_ms is not None and msg.timestamp()[1] < since_ms:
                continue
            seen += 1
            yield Message(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                          msg.timestamp()[1], tuple(msg.headers() or ()))
    finally:
        consumer.close()


def log_ends(bootstrap: str, reported: dict[tuple[str, int], int], timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """The offset after each partition's last record, found by reading, not by asking.

    ``reported`` maps ``(topic, partition)`` to the end the broker's ListOffsets answered (the
    watermark clients and Faust use). Kafka answers the log end; Tansu answers the start of
    the partition's last record batch + 1, short of the end by the batch's other records
    (measured: 8 records produced in one batch, end reported 1). One fetch from the reported
    end - 1 returns that whole batch, and the fetch's end-of-partition event carries the
    true end. Never below the reported end; raises :class:`BrokerError` when a partition does
    not answer within ``timeout``.
    """
    ends = dict(reported)
    todo = {tp: end for tp, end in reported.items() if end > 0}
    if not todo:
        return ends
    consumer = Consumer(client_conf(bootstrap, **{"group.id": "stream-log-ends", "enable.auto.commit": False,
                         "enable.partition.eof": True, "fetch.wait.max.ms": 10, "auto.offset.reset": "latest",
                         **QUIET}))
    try:
        consumer.assign([TopicPartition(t, p, end - 1) for (t, p), end in todo.items()])
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() >= deadline:
                raise BrokerError(f"reading the last batch of {', '.join(f'{t}[{p}]' for t, p in sorted(todo))} "
                                  f"took over {timeout:g}s")
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            tp = (msg.topic(), msg.partition())
            if msg.error() is None:
                ends[tp] = max(ends[tp], msg.offset() + 1)
            elif msg.error().code() == KafkaError._PARTITION_EOF:
                ends[tp] = max(ends[tp], msg.offset())
                todo.pop(tp, None)
            else:
                raise BrokerError(f"reading the last batch of {tp[0]}[{tp[1]}]: {msg.error()}")
    finally:
        consumer.close()
    return ends


class Answers:
    """Records of ``topic`` produced from now on (no consumer group, no commits): open it
    before sending a request, then :meth:`wait` for the records that answer it.

    Starts at each partition's reported end; Tansu reports it short of the true end by the
    last batch's other records, so a few older records may come first: callers match
    answers by id.
    """

    def __init__(self, bootstrap: str, topic: str, timeout: float = 10.0) -> None:
        self.consumer = Consumer(client_conf(bootstrap, **{"group.id": "stream-answers",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 50, **QUIET}))
        try:
            tps = []
            for p in _partitions(self.consumer, topic, timeout):
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                tps.append(TopicPartition(topic, p, max(high, 0)))
            self.consumer.assign(tps)
        except KafkaException as exc:
            self.consumer.close()
            raise BrokerError(f"broker did not answer about {topic}: {exc}") from exc
        except BrokerError:
            self.consumer.close()
            raise

    def wait(self, match: Callable[[bytes], bool], timeout: float, settle: float = 0.5) -> list[bytes]:
        """Values for which ``match`` is true: all that arrive within ``settle`` s of the first
        one (one answer may be several records), or none by ``timeout`` s."""
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now >= deadline:
                return got
            msg = self.consumer.poll(min(0.2, deadline - now))
            if msg is None or msg.error() is not None:
                continue
            if match(msg.value()):
                if not got:
                    deadline = min(deadline, time.monotonic() + settle)
                got.append(msg.value())

    def close(self) -> None:
        self.consumer.close()
