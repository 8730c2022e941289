"""strata's engine: jobs, the image graph, containers, execdrivers, registry client, API."""
