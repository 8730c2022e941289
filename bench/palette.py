"""One colour per driver (and per peer system) in every figure of every report.

A reader who learned "overlay2 is blue" in one figure must not find it orange in the
next, nor in next month's report; so colours are assigned by name, not by plotting
order. Known names get a fixed colour from the Okabe-Ito palette (readable by colour-blind
readers and in greyscale print); any other name gets a stable one derived from its text.
Series labelled `driver/backend`, `driver[options]`, `driver [fs]`, `driver on host` or
`driver @run` take the colour of their driver, and a driver measured in several runs or
variants tells them apart by line
style.
"""

from __future__ import annotations

import logging
import zlib

log = logging.getLogger(__name__)

FIXED = {
    "overlay2": "#0072B2",  # blue
    "btrfs": "#E69F00",  # orange
    "vfs": "#009E73",  # bluish green
    "aufs": "#CC79A7",  # reddish purple
    "devmapper": "#D55E00",  # vermillion
    "dockerd": "#56B4E9",  # sky blue
    "podman": "#F0E442",  # yellow
    "floor": "#000000",  # black: the primitive no driver can beat
}
SPARE = ("#8C564B", "#7F7F7F", "#BCBD22", "#17BECF", "#9467BD", "#1F77B4", "#2CA02C", "#D62728")
DASHES = ("-", "--", ":", "-.")  # the same driver from several runs: same colour, own line style


def base_name(label: str) -> str:
    """The driver or system a series label names: `aufs/fuse [xfs] @2026...` -> `aufs`, and a
    variant `aufs[fuse_passthrough=false]` -> `aufs` (its own line style tells it apart)."""
    return label.split(" @", 1)[0].split(" on ", 1)[0].split("/", 1)[0].split("[", 1)[0].strip()


def colour(label: str) -> str:
    name = base_name(label)
    if name in FIXED:
        return FIXED[name]
    return SPARE[zlib.crc32(name.encode()) % len(SPARE)]


def dash(label: str, labels: list[str]) -> str:
    """Line style of `label` among `labels`: the n-th series of the same driver gets the n-th."""
    same = [other for other in labels if base_name(other) == base_name(label)]
    return DASHES[same.index(label) % len(DASHES)]
