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

In the worker, clicks.v1 is read by librdkafka (:mod:`stream.app.native`), which keeps the
topic out of Faust's fetcher: this topic is then Faust's subscription to it (its group assigns
the partitions, and the table's with them), and the handler is the same the native reader
calls, should Faust ever deliver a message of it.
"""

from __future__ import annotations

from time import monotonic
from typing import Any, Callable

import faust
from faust.types import Message


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

    @property
    def queue(self) -> _Direct:  # type: ignore[override]
        return self._direct

    def _compile_decode(self) -> None:
        """Faust sets ``self.decode`` here (a compiled key/value codec); this topic has none."""
        self.decode = _raw  # type: ignore[method-assign]


async def _raw(message: Message, *, propagate: bool = False) -> Message:
    return message  # no Event, no codec: the handler reads the raw message
