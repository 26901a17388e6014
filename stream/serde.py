"""Avro serde: every schema in ``schemas/`` parsed once, fastavro failures wrapped.

Topics carry raw bytes; this module is the only place that turns them into records
and back. Any failure to decode (truncated bytes, garbage, the wrong schema, trailing
bytes) raises :class:`~stream.errors.SerdeError` with a readable message, so callers
route the message to a dead-letter topic instead of crashing.

>>> reg = SchemaRegistry.default()
>>> event = {"event_id": "e1", "user_id": "u1", "event_type": "view", "timestamp": 1}
>>> data = reg.encode("ClickEvent", event)
>>> reg.decode("ClickEvent", data)["user_id"]
'u1'
>>> reg.decode("ClickEvent", data[:-1])
Traceback (most recent call last):
...
stream.errors.SerdeError: cannot decode ClickEvent: truncated or malformed data (EOFError)
"""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import fastavro
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import validate

from stream.avro_fast import Reader, compile_reader
from stream.config import PROJECT_ROOT
from stream.errors import SerdeError, UnknownSchemaError

#: the value schema of clicks.v1: a union of a single event and a batch envelope
CLICK_MESSAGE = "ClickMessage"
CLICK_EVENT = "ClickEvent"
CLICK_BATCH = "ClickBatch"


class SchemaRegistry:
    """All project schemas, parsed once per process; encode/decode by short name."""

    _default: "SchemaRegistry | None" = None

    def __init__(self, schemas_dir: str | Path) -> None:
        self.dir = Path(schemas_dir)
        self.raw: dict[str, Any] = {}
        self.parsed: dict[str, Any] = {}
        self._named: dict[str, Any] = {}
        self._load()
        #: short names of each union's branches (each a named schema of this registry)
        self.branches: dict[str, list[str]] = {
            name: [(b.get("name", "") if isinstance(b, dict) else str(b)).rsplit(".", 1)[-1] for b in schema]
            for name, schema in self.parsed.items() if isinstance(schema, list)}
        #: compiled readers (stream.avro_fast): the fast path of decode(); fastavro is the reference
        self.fast_readers: dict[str, Reader] = {}
        for name, schema in sorted(self.parsed.items(), key=lambda kv: isinstance(kv[1], list)):
            reader = (self._union_reader(name) if isinstance(schema, list)  # after its branches
                      else compile_reader(schema, self._named))
            if reader is not None:
                self.fast_readers[name] = reader

    @classmethod
    def default(cls) -> "SchemaRegistry":
        """The registry of the repository's ``schemas/`` folder (cached)."""
        if cls._default is None:
            cls._default = cls(PROJECT_ROOT / "schemas")
        return cls._default

    def _load(self) -> None:
        files = sorted(self.dir.glob("*.avsc"))
        if not files:
            raise SerdeError(f"no .avsc schemas in {self.dir}")
        for f in files:
            try:
                self.raw[f.stem] = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise SerdeError(f"schema file {f} is unreadable: {exc}", schema=f.stem) from exc
        named = self._named
        pending = dict(self.raw)
        # Parse in dependency order: retry until every reference resolves.
        while pending:
            progressed = False
            for name, raw in list(pending.items()):
                try:
                    self.parsed[name] = parse_schema(raw, named_schemas=named)
                except fastavro.schema.UnknownType:
                    continue
                except fastavro.schema.SchemaParseException as exc:
                    raise SerdeError(f"schema {name} is invalid: {exc}", schema=name) from exc
                del pending[name]
                progressed = True
            if not progressed:
                raise SerdeError(f"schemas reference unknown types: {', '.join(sorted(pending))}")

    @property
    def names(self) -> list[str]:
        return sorted(self.parsed)

    def schema(self, name: str) -> Any:
        try:
            return self.parsed[name]
        except KeyError:
            raise UnknownSchemaError(f"unknown schema {name!r}; known: {', '.join(self.names)}",
                                     schema=name) from None

    def encode(self, name: str, record: Any) -> bytes:
        """Encode a record (a dict; for a union, a ``(branch_name, dict)`` tuple)."""
        schema = self.schema(name)
        buf = io.BytesIO()
        if isinstance(schema, list):
            branch, record = self._branch_by_name(name, record)
            buf.write(_zigzag(branch))
            schema = self.parsed[self.branches[name][branch]]
        try:
            schemaless_writer(buf, schema, record)
        except Exception as exc:  # fastavro raises many types; explain with validate()
            raise SerdeError(f"cannot encode {name}: {_explain(schema, record, exc)}", schema=name) from exc
        return buf.getvalue()

    def _branch_by_name(self, name: str, record: Any) -> tuple[int, Any]:
        branches = self.branches[name]
        if not (isinstance(record, tuple) and len(record) == 2 and record[0] in branches):
            raise SerdeError(f"cannot encode {name}: give a (branch, record) tuple with branch one of "
                             f"{', '.join(branches)}", schema=name)
        return branches.index(record[0]), record[1]

    def _union_reader(self, name: str) -> Reader | None:
        """A compiled reader of a top-level union of this registry's named schemas."""
        names = self.branches[name]
        readers = [self.fast_readers.get(n) for n in names]
        if any(r is None for r in readers):
            return None
        labelled = tuple(zip(names, readers))

        def read(b: bytes, i: int) -> tuple[Any, int]:
            k = b[i]
            if k > 127 or k & 1:  # one-byte, non-negative branch indexes only; fastavro explains the rest
                raise ValueError("union branch")
            branch, reader = labelled[k >> 1]
            value, end = reader(b, i + 1)  # type: ignore[misc]
            return (branch, value), end
        return read

    def decode(self, name: str, data: bytes) -> Any:
        """Decode bytes written with schema ``name``; trailing bytes are an error.

        For a union of named types (``ClickMessage``) the result is ``(branch_name, dict)``.
        Valid bytes go through the schema's compiled reader; anything it does not accept is
        decoded again by fastavro, which returns the value or says what is wrong.
        """
        fast = self.fast_readers.get(name)
        if fast is not None and type(data) is bytes:
            try:
                value, end = fast(data, 0)
            except Exception:  # noqa: BLE001 - any doubt: the reference reader decides
                pass
            else:
                if end == len(data):
                    return value
        return self._decode_reference(name, data)

    def _decode_reference(self, name: str, data: bytes) -> Any:
        """fastavro's decode, its failures explained as SerdeError."""
        schema = self.schema(name)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise SerdeError(f"cannot decode {name}: expected bytes, got {type(data).__name__}", schema=name)
        buf = io.BytesIO(data)
        branch = None
        if isinstance(schema, list):
            branch = _read_zigzag(buf)
            if branch is None:
                raise SerdeError(f"cannot decode {name}: truncated or malformed data (no union branch)",
                                 schema=name)
            if not 0 <= branch < len(schema):
                raise SerdeError(f"cannot decode {name}: union branch {branch} is not one of "
                                 f"{', '.join(self.branches[name])}", schema=name)
            schema = self.parsed[self.branches[name][branch]]
        try:
            record = schemaless_reader(buf, schema, None)
        except Exception as exc:  # EOFError, UnicodeDecodeError, IndexError, ValueError, ...
            kind = "truncated or malformed data" if isinstance(exc, (EOFError, StopIteration)) \
                else "malformed data"
            raise SerdeError(f"cannot decode {name}: {kind} ({type(exc).__name__})", schema=name) from exc
        left = len(data) - buf.tell()
        if left:
            raise SerdeError(f"cannot decode {name}: {left} trailing byte(s) after the record "
                             f"(written with another schema?)", schema=name)
        if branch is not None:
            return self.branches[name][branch], record
        return record

    def decode_prefix(self, name: str, data: bytes) -> tuple[Any, int]:
        """Decode a record of schema ``name`` at the start of ``data``; returns (record, bytes used)."""
        buf = io.BytesIO(data)
        try:
            record = schemaless_reader(buf, self.schema(name), None)
        except Exception as exc:
            raise SerdeError(f"cannot decode {name}: malformed data ({type(exc).__name__})", schema=name) from exc
        return record, buf.tell()

    # clicks.v1 helpers: a message is one event or a batch of events.
    def encode_click(self, event: dict) -> bytes:
        return self.encode(CLICK_MESSAGE, (CLICK_EVENT, event))

    def encode_batch(self, batch: dict) -> bytes:
        return self.encode(CLICK_MESSAGE, (CLICK_BATCH, batch))

    def encode_envelope(self, events: list[dict], producer: str) -> bytes:
        """A new batch envelope around ``events``: a fresh ``batch_id``, ``created`` now."""
        return self.encode_batch({"batch_id": uuid.uuid4().hex, "producer": producer,
                                  "created": int(time.time() * 1000), "events": events})

    def decode_clicks(self, data: bytes) -> tuple[str, dict]:
        """``("ClickEvent", event)`` or ``("ClickBatch", batch)``."""
        return self.decode(CLICK_MESSAGE, data)


def avro_bytes(data: bytes) -> bytes:
    """The Avro binary encoding of a ``bytes`` value (its length, then the bytes).

    >>> avro_bytes(b"ab")
    b'\\x04ab'
    """
    return _zigzag(len(data)) + data


def _zigzag(n: int) -> bytes:
    """Avro's zig-zag varint encoding of an int (a union's branch index)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_zigzag(buf: io.BytesIO) -> int | None:
    """Read a zig-zag varint (at most 5 bytes) from ``buf``; None if truncated or too long."""
    n = shift = 0
    for _ in range(5):
        b = buf.read(1)
        if not b:
            return None
        n |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return (n >> 1) ^ -(n & 1)
        shift += 7
    return None


def _explain(schema: Any, record: Any, exc: Exception) -> str:
    try:
        validate(record, schema, raise_errors=True)
    except Exception as verr:  # ValidationError lists the failing fields
        text = str(verr)
        return text if len(text) < 500 else text[:500] + "..."
    return f"{type(exc).__name__}: {exc}"
