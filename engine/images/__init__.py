"""engine.images."""
