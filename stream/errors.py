"""The project's exception tree, drawn once.

::

    StreamError                      root: every error this project raises on purpose
    ├── ConfigError                  bad settings file / environment value
    ├── TopologyError                topology YAML invalid (names the topic or stage)
    ├── SerdeError                   bytes could not be decoded / record not encodable
    │   └── UnknownSchemaError       no schema with that name
    ├── ValidationError              decoded fine, but the meaning is wrong (a reject)
    ├── StackError                   embedded broker/Redis could not be started/stopped
    │   └── PortInUseError           a requested port is already taken
    ├── BrokerError                  the Kafka broker failed or timed out
    └── StoreError                   Redis failed or timed out

Poison input (``SerdeError``, ``ValidationError``) is routed to a dead-letter topic;
infrastructure faults (``BrokerError``, ``StoreError``) are retried with a bound and
then stop the worker; anything else is a bug and stops the worker with a clear log line.
"""

from __future__ import annotations


class StreamError(Exception):
    """Root of every error raised on purpose by this project."""


class ConfigError(StreamError):
    """A settings file or environment variable holds an invalid value."""


class TopologyError(StreamError):
    """The topology declaration is invalid; the message names the topic or stage."""


class SerdeError(StreamError):
    """Bytes could not be decoded with the schema, or a record could not be encoded."""

    def __init__(self, message: str, *, schema: str | None = None) -> None:
        super().__init__(message)
        self.schema = schema


class UnknownSchemaError(SerdeError):
    """No schema of that name is known."""


class ValidationError(StreamError):
    """A record decoded fine but its meaning is wrong (missing id, unknown type, ...).

    ``reason`` is a short machine-friendly code (``missing_user_id``), the message
    is for humans.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StackError(StreamError):
    """The embedded stack could not be started, checked or stopped."""


class PortInUseError(StackError):
    """A port the stack was asked to use is already taken by another process."""

    def __init__(self, service: str, port: int) -> None:
        super().__init__(f"{service} port {port} is already in use on 127.0.0.1; "
                         f"choose another port or stop whatever listens there")
        self.service = service
        self.port = port


class BrokerError(StreamError):
    """The Kafka-protocol broker failed or did not answer in time."""


class StoreError(StreamError):
    """Redis failed or did not answer in time."""
