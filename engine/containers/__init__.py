"""Containers: a container's record, the store that creates, runs and removes them over
the Graph and an execdriver, the options of `create`/`run`, and the container jobs."""
