"""Pure stage logic: ``(state, event) -> (state, outputs)``, no I/O, no framework imports."""
