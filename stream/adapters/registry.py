"""The model registry in Redis: versioned snapshots, integrity-checked before loading.

A release stores the pickled model under its own key and a ModelRelease record (Avro)
with the blob's SHA-256 and HMAC-SHA256 (keyed by ``model.hmac_key``). ``load`` checks
both before unpickling; a blob that does not match is refused with
:class:`ModelIntegrityError` and never deserialised.

Keys (prefix ``stream:``): ``model:<name>:seq`` (version counter), ``model:<name>:v:<n>``
(blob), ``model:<name>:release:<n>`` (ModelRelease), ``model:<name>:versions`` (sorted
set), ``model:<name>:latest`` (the champion's newest release), ``model:<name>:challenger``
(the challenger's newest release during a shadow or canary), ``model:<name>:rollout`` (the
rollout state, JSON), ``model:<name>:frozen``, ``model:<name>:reset``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import time
from typing import Any

import redis

from stream.errors import SerdeError, StoreError, StreamError
from stream.serde import SchemaRegistry


class ModelIntegrityError(StreamError):
    """A model blob does not match the digests recorded in its release."""


class ModelRegistry:
    def __init__(self, url: str, hmac_key: str, registry: SchemaRegistry, prefix: str = "stream:",
                 timeout: float = 5.0) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.key = hmac_key.encode()
        self.serde = registry
        self.prefix = prefix

    def _k(self, name: str, *parts: object) -> str:
        return ":".join([f"{self.prefix}model", name, *map(str, parts)])

    def _call(self, fn, *args: Any) -> Any:
        try:
            return fn(*args)
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"model registry (Redis) failed: {exc}") from exc

    def sign(self, blob: bytes) -> tuple[str, str]:
        return hashlib.sha256(blob).hexdigest(), hmac.new(self.key, blob, hashlib.sha256).hexdigest()

    def release(self, name: str, model: Any, *, family: str, parent: int | None, examples: int,
                metrics: dict[str, float], pointer: str | None = "latest", min_version: int = 0) -> dict:
        """Store a new version of ``model`` and point ``pointer`` at it (None: only store it,
        e.g. a candidate trained offline); returns its ModelRelease record. The version is
        at least ``min_version`` (a learner that outlived a registry reset keeps counting up)."""
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        sha, mac = self.sign(blob)
        version = int(self._call(self.client.incr, self._k(name, "seq")))
        if version < min_version:
            self._call(self.client.set, self._k(name, "seq"), min_version)
            version = min_version
        rec = {"model_name": name, "version": version, "parent_version": parent, "family": family,
               "created": int(time.time() * 1000), "examples_seen": int(examples),
               "metrics": {k: float(v) for k, v in metrics.items()}, "blob_key": self._k(name, "v", version),
               "blob_sha256": sha, "blob_hmac": mac, "blob": None}
        pipe = self.client.pipeline(transaction=True)
        pipe.set(rec["blob_key"], blob)
        pipe.set(self._k(name, "release", version), self.serde.encode("ModelRelease", rec))
        pipe.zadd(self._k(name, "versions"), {str(version): version})
        if pointer:
            pipe.set(self._k(name, pointer), version)
        self._call(pipe.execute)
        return rec

    def blob(self, release: dict) -> bytes | None:
        return self._call(self.client.get, release["blob_key"])

    def restore(self, release: dict) -> dict:
        """Put a release carried with its blob (from models.v1) back into a registry that lost
        it, as the latest; refused (ModelIntegrityError) unless the blob's HMAC is this
        deployment's. Returns the release as the registry keeps it (no blob)."""
        blob = release.get("blob")
        sha, mac = self.sign(blob or b"")
        if not blob or sha != release["blob_sha256"] or not hmac.compare_digest(mac, release["blob_hmac"]):
            raise ModelIntegrityError(f"model {release['model_name']} v{release['version']} on models.v1: blob "
                                      f"missing or not signed with this registry key; not restored")
        name, version = release["model_name"], release["version"]
        rec = {**release, "blob": None}
        seq = self._call(self.client.get, self._k(name, "seq"))
        pipe = self.client.pipeline(transaction=True)
        pipe.set(rec["blob_key"], blob)
        pipe.set(self._k(name, "release", version), self.serde.encode("ModelRelease", rec))
        pipe.zadd(self._k(name, "versions"), {str(version): version})
        pipe.set(self._k(name, "latest"), version)
        if seq is None or int(seq) < version:  # the next release gets a new version number
            pipe.set(self._k(name, "seq"), version)
        self._call(pipe.execute)
        return rec

    def pointer(self, name: str, which: str) -> dict | None:
        """The release a pointer (``latest``, ``challenger``) names, if any."""
        v = self._call(self.client.get, self._k(name, which))
        return self.release_record(name, int(v)) if v else None

    def set_pointer(self, name: str, which: str, version: int | None) -> None:
        if version is None:
            self._call(self.client.delete, self._k(name, which))
        else:
            self._call(self.client.set, self._k(name, which), version)

    def meta(self, name: str, key: str) -> str | None:
        raw = self._call(self.client.get, self._k(name, key))
        return raw.decode() if raw else None

    def set_meta(self, name: str, key: str, value: object) -> None:
        self._call(self.client.set, self._k(name, key), str(value))

    def rollout(self, name: str) -> dict | None:
        raw = self._call(self.client.get, self._k(name, "rollout"))
        return json.loads(raw) if raw else None

    def save_rollout(self, name: str, state: dict) -> None:
        self._call(self.client.set, self._k(name, "rollout"), json.dumps(state, sort_keys=True))

    def release_record(self, name: str, version: int) -> dict | None:
        raw = self._call(self.client.get, self._k(name, "release", version))
        return self.serde.decode("ModelRelease", raw) if raw else None

    def latest(self, name: str) -> dict | None:
        return self.pointer(name, "latest")

    def versions(self, name: str) -> list[dict]:
        vs = self._call(self.client.zrange, self._k(name, "versions"), 0, -1)
        return [r for r in (self.release_record(name, int(v)) for v in vs) if r]

    def load(self, release: dict) -> Any:
        """Unpickle a release's blob after checking its SHA-256 and HMAC."""
        blob = self._call(self.client.get, release["blob_key"])
        if blob is None:
            raise ModelIntegrityError(f"model {release['model_name']} v{release['version']}: blob "
                                      f"{release['blob_key']} is missing")
        sha, mac = self.sign(blob)
        if sha != release["blob_sha256"] or not hmac.compare_digest(mac, release["blob_hmac"]):
            raise ModelIntegrityError(f"model {release['model_name']} v{release['version']}: blob digest does not "
                                      f"match its release (tampered or wrong registry key); refusing to load it")
        return pickle.loads(blob)  # noqa: S301 - integrity checked with the HMAC above

    # learning switches (set by the CLI, read by the learner)
    def set_flag(self, name: str, flag: str, on: bool) -> None:
        if on:
            self._call(self.client.set, self._k(name, flag), "1")
        else:
            self._call(self.client.delete, self._k(name, flag))

    def flag(self, name: str, flag: str) -> bool:
        return bool(self._call(self.client.exists, self._k(name, flag)))

    def close(self) -> None:
        self.client.close()


def newest_release(bootstrap: str, serde: SchemaRegistry, name: str, topic: str = "models.v1",
                   timeout: float = 30.0) -> dict | None:
    """The newest release of ``name`` on ``topic`` that carries its blob (None if there is none).

    The topic is compacted on Kafka (one record per model); Tansu keeps every record, so this
    reads them all, once, when a learner starts with an empty registry."""
    from stream.adapters.kafka import read  # noqa: PLC0415 - only the learner's start needs Kafka

    best = None
    for msg in read(bootstrap, topic, idle_timeout=1.0, deadline=time.monotonic() + timeout):
        if msg.key != name.encode() or msg.value is None:
            continue
        try:
            rec = serde.decode("ModelRelease", msg.value)
        except SerdeError:
            continue
        if rec.get("blob") and (best is None or rec["version"] > best["version"]):
            best = rec
    return best
