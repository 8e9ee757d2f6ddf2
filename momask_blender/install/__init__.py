"""Installing what the add-on needs from its preferences, without a terminal: the weights (weights).
Plain stdlib (no bpy): the work runs on worker threads, the UI reads the progress."""
