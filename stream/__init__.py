"""stream: a streaming ML service for clickstream recommendations.

Layers (see ../shared/DESIGN.md and STYLE.md):

- ``stream.core``: pure stage logic, no Kafka/Faust/Redis imports.
- ``stream.serde``, ``stream.records``: Avro schemas (``schemas/*.avsc``) are the source of truth.
- ``stream.topology``: topics and stages declared in ``topologies/*.yaml``.
- ``stream.adapters``: Kafka, Redis and metrics behind small interfaces.
- ``stream.app``: the only package that imports Faust.
- ``stream.cli``: the ``stream`` command.
"""

__version__ = "0.1.0"
