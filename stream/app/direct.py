"""A Faust topic whose messages go straight to a synchronous handler, inside the conductor.

Faust hands every consumed message to the channels subscribed to its topic: it decodes an
``Event``, puts it on the channel's queue, and an agent's ``Stream`` takes it off again,
runs sensors, yields it to the agent and acknowledges it afterwards. For one event per
Kafka message that machinery is most of the cost (~33 asyncio callbacks per message). A
stage runner that is synchronous and never awaits has no use for the queue: this channel
runs the handler where the conductor would enqueue, then acknowledges the message through
Faust's consumer, so offsets, commits, rebalances and the commit hooks work as for an agent.

What it gives up: the handler runs inside the fetch loop, so it must not block and must not
raise (the caller's handler catches everything and stops the worker on a fault), and
Faust's per-stream sensors do not see these messages (the stage's own metrics do); the one
figure Faust itself reads back, each partition's last inbound time (its livelock check
logs "stream idle" without it), is kept.

Faust's fetch loop hands each message to the conductor through ``wait_first(callback,
suspend_flow.wait())``: four tasks per message (those two, and the consumer's stopped and
crashed events), so that a rebalance can interrupt a callback blocked on a full agent queue. A direct topic's callback never blocks, so
:func:`install_direct_drain` gives the loop a shortcut: a message of a direct topic is
awaited directly while the flow is not suspended; any other message, or any message while
the flow is suspended, goes through ``wait_first`` as before.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any, Callable

import faust
from faust.transport.consumer import CONSUMER_FETCHING as _FETCHING
from faust.transport.consumer import Consumer
from faust.types import Message

#: topics delivered by a DirectTopic in this process (the drain loop's shortcut applies to these)
DIRECT_TOPICS: set[str] = set()


class _Direct:
    """Stands where the channel's queue is: a put runs the handler and acknowledges."""

    def __init__(self, app: faust.App, handler: Callable[[Message], None]) -> None:
        self.app, self.handler = app, handler
        self._consumer: Any = None  # the app's consumer, looked up once it exists
        self._inbound: dict = {}

    def full(self) -> bool:
        return False

    def put_nowait_enhanced(self, value: Message, **_: Any) -> None:  # Faust passes value= by keyword
        consumer = self._consumer
        if consumer is None:
            consumer = self._consumer = self.app.consumer
            self._inbound = self.app.monitor.stream_inbound_time
        self._inbound[value.tp] = monotonic()  # what Faust's livelock check reads (a stream sets it)
        self.handler(value)
        value.ack(consumer)  # the conductor counted one reference per channel

    def clear(self) -> None:  # flow control clears queues on a rebalance: nothing is held here
        pass

    def empty(self) -> bool:
        return True


class DirectTopic(faust.Topic):
    """A raw (bytes) topic delivered to ``handler(message)`` by Faust's conductor itself."""

    def __init__(self, app: faust.App, name: str, partitions: int, handler: Callable[[Message], None]) -> None:
        super().__init__(app, topics=[name], partitions=partitions, key_serializer="raw", value_serializer="raw",
                         acks=True)
        self._direct = _Direct(app, handler)
        app.topics.add(self)
        DIRECT_TOPICS.add(name)

    @property
    def queue(self) -> _Direct:  # type: ignore[override]
        return self._direct

    def _compile_decode(self) -> None:
        """Faust sets ``self.decode`` here (a compiled key/value codec); this topic has none."""
        self.decode = _raw  # type: ignore[method-assign]


async def _raw(message: Message, *, propagate: bool = False) -> Message:
    return message  # no Event, no codec: the handler reads the raw message


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - Faust's loop
    """Faust 0.15's ``Consumer._drain_messages``, with the direct-topic shortcut (see above)."""
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    suspended = self.suspend_flow.is_set
    direct = DIRECT_TOPICS
    num_since_yield = 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            self.diag.set_flag(_FETCHING)
            ait = getmany(timeout=1.0)
            await self.sleep(0)  # Faust's own: getmany may never release the loop otherwise
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > 100:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if message.topic in direct and not suspended():
                            await callback(message)  # a direct topic's callback never blocks
                        else:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
            self.diag.unset_flag(_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        self.diag.unset_flag(_FETCHING)


def install_direct_drain() -> None:
    """Use the drain loop above for Faust's consumers (the upstream loop it copies is checked by
    :mod:`stream.app.compat` before a worker starts)."""
    _drain_messages.__wrapped__ = getattr(Consumer._drain_messages, "__wrapped__", Consumer._drain_messages)  # type: ignore[attr-defined]
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
