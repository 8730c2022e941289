"""engine.containers."""
