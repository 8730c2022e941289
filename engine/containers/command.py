"""What a container runs: the user's Entrypoint and Cmd merged with its image's, as dockerd does.

One rule for create (the argv), inspect (Config.Entrypoint and Config.Cmd) and commit
(the new image's ENTRYPOINT and CMD), so the three cannot disagree. Docker's merge: an
Entrypoint given replaces the image's and drops the image's Cmd with it; `[""]` resets
the entrypoint to none; with no Entrypoint given, the image's is kept and an empty Cmd
takes the image's.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import UsageError

log = logging.getLogger(__name__)


def resolve(image_config: dict[str, Any], entrypoint: list[str], cmd: list[str]) -> tuple[list[str], list[str]]:
    """(entrypoint, cmd) of a new container; `entrypoint` [] means not given (the image's)."""
    if not entrypoint:
        entrypoint = list(image_config.get("Entrypoint") or [])
        cmd = list(cmd or image_config.get("Cmd") or [])
    if entrypoint == [""]:
        entrypoint = []
    if not entrypoint and not cmd:
        raise UsageError("no command specified: the image has none and none was given")
    return list(entrypoint), list(cmd)
