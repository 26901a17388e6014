"""Stage handlers: connect a pure core to its state and output ports (no Faust here)."""
