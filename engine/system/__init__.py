"""System: facts about the host, and the `info` and `df` jobs that report them."""
