"""The Faust internals this project relies on, checked against the one Faust it was written for.

The worker reaches below Faust's public API in a few places (the native clicks reader, the
commit hook, the fetch wait, the recovery's changelog ends). Each of
those upstream functions is listed in :data:`UPSTREAM` with the SHA-256 of its source as
installed from ``faust-streaming==FAUST_VERSION`` (pinned in ``pyproject.toml``):
:func:`check` compares them, and a worker refuses to start on anything else
(:func:`require`), so an upgrade is a conscious step: read the upstream diff, adapt, update
the hashes (``python -m stream.app.compat`` prints them).

The patches that live here:

* :func:`install_true_changelog_ends`: Faust's recovery reads a changelog partition up to the
  end the broker reports. Tansu reports the start of the partition's last record batch + 1
  (:func:`stream.adapters.kafka.log_ends`), so after a state write cut short (a rebalance
  mid-cut, a crash) the changelog ends in a multi-record batch and Faust (a) stops the
  recovery early and (b), once it has read that batch, holds an offset above the reported
  end: on the next rebalance that keeps the partition, its consistency check raised
  ``ConsistencyError`` (persisted offset higher than the highwater) and the worker crashed
  with exit 1 (issue: rebalance churn; seen in CI). The patch reads the true end; an offset
  above the *true* end is a changelog that lost records (a broker restart): the worker stops
  with one line saying so.
* :func:`before_offsets`: the checkpoint's hook right before Faust writes the offsets.
* :func:`tune_fetch_wait`: aiokafka's ``fetch_max_wait_ms``, which Faust hard-codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import logging
from typing import Any, Awaitable, Callable

import faust

from stream.errors import BrokerError, StreamError
from stream.log import event

log = logging.getLogger("stream.worker")

FAUST_VERSION = "0.15.3"

#: ``module:qualname`` -> SHA-256 of the upstream source this project was checked against
UPSTREAM: dict[str, str] = {
    # the recovery: the changelog ends (patched here) and the offsets they are checked against
    "faust.tables.recovery:Recovery._build_highwaters":
        "91b4cc0d3724ae7bfc398e873684fc6f667ef8feb61a3b3314346ef11f2823de",
    "faust.tables.recovery:Recovery._build_offsets":
        "27eec86be06cb51f66dfd2572be2f9b41acd22c3570239bb5c554bd94e59a1d6",
    "faust.tables.recovery:Recovery._restart_recovery":
        "6bd8a8558a2dffe4c60b8150f23d721baa6b3d658367f911a3ad2187e20efc6f",
    "faust.tables.recovery:Recovery.on_rebalance":
        "aa4d997a1795ceae3880f98311b46935d9ae1a183a699b9a283bb4306bc8641f",
    # recovery progress (stream.app.worker logs it): in_recovery is set by _set_recovery_started
    "faust.tables.recovery:Recovery._set_recovery_started":
        "bcfebf81ae13fc7551f3cdfee4335dc20600e084291fdcba0040b0defae84bec",
    "faust.tables.recovery:Recovery.active_remaining":
        "0dcc38568ad5018b311c00ac7ceebc257d909591267bc47fdb5cd40aad418c50",
    "faust.tables.recovery:Recovery.active_remaining_total":
        "b61e82f5a3850445305c71ed48f97f0ff356c7a80831edd96ebc850f6c3eab14",
    # what stream.app.native wraps or calls on Faust's consumer
    "faust.transport.consumer:Consumer.ack":
        "5fcf41cf45153475de3790dc56fec1b83335956dc8b3bf7ff6bbb2b57627f03f",
    "faust.transport.consumer:Consumer._add_gap":
        "4df2573ded7c1c2cde04dc6bde6d4480cb5875ef565256e56966b585ae39b1c1",
    "faust.transport.consumer:Consumer.verify_event_path":
        "aead7dc3d8dc43fa242b82c75512329fa0289dfe936dcf22168fb31d00229845",
    "faust.transport.consumer:Consumer.seek_to_committed":
        "8d52f70fc8826291e882f9f289c84b4ad142539c2c856f790241d907f146efa3",
    "faust.transport.consumer:Consumer._new_topicpartition":
        "251f7894421594306e374ffa2c868772e4381872389d506bf7ddce6a57f1f806",
    "faust.transport.consumer:Consumer._get_active_partitions":
        "b24897f3c7afdb5d02e5741d1a3d3c2bacf595802ed204231544cd7fde4e7eab",
    "faust.transport.consumer:Consumer.commit":
        "a354437baaa08bf8096d978ca195963e22f7a497d18392960dd53dacb7c9f2d8",
    # the consumer whose fetch wait tune_fetch_wait sets
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_worker_consumer":
        "c2701bfc3e6f6cad95c2be36d6a255a86e2c57d18d36cc1082b5fb5c482d99d7",
    # the commit: its sensor call marks the commit point, its producer flush (awaited right
    # before the offsets are written) is where stream.app.clicks writes the state
    "faust.transport.consumer:Consumer.force_commit":
        "cc094614d22c70fb03606f8e5b940fddedcc7d46648d53ae6ec53cab1546be13",
    "faust.transport.consumer:Consumer._commit_offsets":
        "1a6979904118844111259d182ca1c6e92ccc16364ccbe55c58e59d6e254a7adb",
}


def _resolve(name: str) -> Any:
    module, qualname = name.split(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    obj = getattr(obj, "fun", obj)  # a mode Service.task keeps its function here
    return getattr(obj, "__wrapped__", obj)  # our own wrappers keep the original here


def source_hash(name: str) -> str:
    return hashlib.sha256(inspect.getsource(_resolve(name)).encode()).hexdigest()


def check() -> str | None:
    """None if the installed Faust is the one this project was checked against; else why not."""
    if faust.__version__ != FAUST_VERSION:
        return f"written and checked for faust-streaming {FAUST_VERSION}, this is {faust.__version__}"
    changed = []
    for name, expected in UPSTREAM.items():
        try:
            if source_hash(name) != expected:
                changed.append(name)
        except (AttributeError, ImportError, OSError, TypeError):
            changed.append(f"{name} (missing)")
    return f"upstream code changed: {', '.join(changed)}" if changed else None


def require() -> None:
    """Raise :class:`StreamError` unless :func:`check` passes (a worker calls it before building)."""
    reason = check()
    if reason:
        raise StreamError(f"unsupported Faust: {reason}; install the pinned faust-streaming=={FAUST_VERSION}")


def recovery_remaining(app: faust.App) -> int | None:
    """Changelog records this worker still has to read to restore its tables; None when it is
    not recovering."""
    recovery = app.tables.recovery
    if not recovery.in_recovery:
        return None
    return int(recovery.active_remaining_total())


def bootstrap_of(app: faust.App) -> str:
    return ",".join(f"{url.host}:{url.port}" for url in app.conf.broker)


def install_true_changelog_ends(on_lost: Callable[[str], None],
                                read_ends: Callable[[str, dict], dict] | None = None) -> None:
    """Make Faust's recovery read each changelog partition to its true end (see the module doc).

    ``on_lost(reason)`` is called (and expected not to return) when this worker holds a
    changelog offset above the partition's true end: records it read are gone from the broker.
    """
    from faust.tables.recovery import Recovery  # noqa: PLC0415

    from stream.adapters.kafka import log_ends  # noqa: PLC0415
    read_ends = read_ends or log_ends
    original = getattr(Recovery._build_highwaters, "__wrapped__", Recovery._build_highwaters)

    async def _build_highwaters(self: Any, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await original(self, consumer, tps, destination, title)
        # Faust keeps "last offset" = reported end - 1 (-1 for an empty partition)
        reported = {(tp.topic, tp.partition): destination[tp] + 1 for tp in tps}
        try:
            ends = await asyncio.to_thread(read_ends, bootstrap_of(self.app), reported)
        except BrokerError as exc:
            on_lost(f"recovery could not read the changelog ends: {exc}")
            return
        corrected = 0
        for tp in tps:
            end = ends[(tp.topic, tp.partition)]
            corrected += end != reported[(tp.topic, tp.partition)]
            destination[tp] = end - 1
        event(log, "changelog_ends_read", kind=title, partitions=len(tps), corrected=corrected)
        held_offsets = self.active_offsets if title == "active" else self.standby_offsets
        for tp in tps:
            held = held_offsets.get(tp)
            if held is not None and held > destination[tp]:
                on_lost(f"changelog {tp.topic}[{tp.partition}] ends at offset {destination[tp]} but this worker "
                        f"already read offset {held}: the broker lost records (restarted?). On the embedded "
                        f"stack: `stream up && stream topics create`, then restart every worker")
                return

    _build_highwaters.__wrapped__ = original  # type: ignore[attr-defined]
    Recovery._build_highwaters = _build_highwaters  # type: ignore[method-assign]


def before_offsets(app: faust.App, hook: Callable[[], Awaitable[None]]) -> None:
    """Run ``hook`` where Faust awaits its producer's flush(): in ``Consumer._commit_offsets``,
    right before it writes the offsets (call once the app's producer exists)."""
    producer = app.producer
    faust_flush = getattr(producer.flush, "__wrapped__", producer.flush)

    async def flush() -> None:
        await faust_flush()
        await hook()
    flush.__wrapped__ = faust_flush  # type: ignore[attr-defined]
    producer.flush = flush


def tune_fetch_wait(ms: int) -> None:
    """Faust hard-codes aiokafka's ``fetch_max_wait_ms=1500``; Tansu holds a fetch that long
    when little data is waiting, which put ~1.5 s of lag on every event (measured). The
    consumer keeps the value until it starts, so set ours right after Faust creates it."""
    from faust.transport.drivers import aiokafka as driver  # noqa: PLC0415
    cls = driver.AIOKafkaConsumerThread
    original = getattr(cls._create_worker_consumer, "__wrapped__", cls._create_worker_consumer)

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms
        return consumer
    create.__wrapped__ = original  # type: ignore[attr-defined]
    cls._create_worker_consumer = create  # type: ignore[method-assign]


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    for name in UPSTREAM:
        print(f'    "{name}":\n        "{source_hash(name)}",')
