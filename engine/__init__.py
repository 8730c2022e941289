"""strata's engine: jobs, the image graph, containers, execdrivers, registry client, API."""

import logging

__version__ = "0.1.0"

# A library logs only where its program asks it to (`strata daemon --log-level`); without
# this, Python would print the engine's warnings to stderr of every CLI command.
logging.getLogger(__name__).addHandler(logging.NullHandler())
