"""engine.api.routes."""
