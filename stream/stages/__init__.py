"""Stage handlers: connect a pure core to its state and output ports (no Faust here)."""

#: what a worker can run (``stream worker --stages``)
STAGES = ("ingest", "profile", "feedback", "score", "learn", "drift")
#: stages that run without the clicks stages, in their own consumer group
SIDE_STAGES = frozenset({"learn", "drift"})
DEFAULT_STAGES = "ingest,profile,feedback,score,learn"
