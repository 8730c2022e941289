"""strata's engine: jobs, the image graph, containers, execdrivers, registry client, API."""

__version__ = "0.1.0"
