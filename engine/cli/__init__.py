"""The `strata` command: the entry point with its fast client path, the subcommands built
from job declarations, and the daemon client. Nothing heavy is imported here."""
