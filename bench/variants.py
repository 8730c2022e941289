"""Driver variants: one driver with options of its own, measured as a participant of its own.

`--driver 'aufs[fuse_passthrough=false]'` beside `--driver aufs` puts both in one run, so
the runner interleaves them repetition by repetition like two drivers (machine drift falls
on both alike) -- where `-o aufs.fuse_passthrough=false` would set the option for every
aufs of the run. A variant's options are the driver's own (the part after `aufs.`), on top
of any `-o` for that driver; the driver refuses an option it does not know when it starts.
Rows keep the driver's name in `driver` and its options in `options`, and summaries,
reports and comparisons label the series `aufs[fuse_passthrough=false]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)(?:\[(?P<options>[^\[\]]*)\])?$")
_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


class VariantError(ValueError):
    """A --driver value that is neither NAME nor NAME[KEY=VALUE,...]."""


@dataclass(frozen=True)
class DriverSpec:
    name: str
    options: tuple[tuple[str, str], ...] = ()  # the variant's own, keys without the driver prefix

    @property
    def column(self) -> str:
        """The variant's own options as the `options` column holds them."""
        return text(self.name, dict(self.options))

    @property
    def label(self) -> str:
        """The participant's name in progress bars, warnings and run.json."""
        return f"{self.name}[{self.column}]" if self.options else self.name

    @property
    def slug(self) -> str:
        """The label as a directory name: no characters that mount options or paths split on."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.label)

    def storage_opts(self, run_opts: dict[str, str]) -> dict[str, str]:
        """The driver's options: the run's `-o` for this driver, then the variant's own."""
        mine = {k: v for k, v in run_opts.items() if k.split(".", 1)[0] == self.name}
        return {**mine, **{f"{self.name}.{k}": v for k, v in self.options}}


def parse(value: str) -> DriverSpec:
    """`NAME` or `NAME[KEY=VALUE,...]`; malformed text is a VariantError saying why."""
    m = _SPEC.match(value.strip())
    if not m:
        raise VariantError(f"--driver {value!r}: want NAME or NAME[KEY=VALUE,...] (e.g. aufs[fuse_passthrough=false])")
    options: dict[str, str] = {}
    if m["options"] is not None:
        if not m["options"].strip():
            raise VariantError(f"--driver {value!r}: empty option list")
        for item in m["options"].split(","):
            key, sep, val = item.partition("=")
            key, val = key.strip(), val.strip()
            if not sep or not _KEY.match(key):
                raise VariantError(f"--driver {value!r}: option {item!r} is not KEY=VALUE")
            if key in options:
                raise VariantError(f"--driver {value!r}: option {key} given twice")
            options[key] = val
    return DriverSpec(m["name"], tuple(sorted(options.items())))


def text(driver: str, options: dict[str, str]) -> str:
    """A driver's options as the `options` column holds them: sorted `key=value,...`, keys
    without the `driver.` prefix."""
    return ",".join(f"{k.removeprefix(driver + '.')}={v}" for k, v in sorted(options.items()))


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose `driver` names the variant (`aufs[fuse_passthrough=false]`), so every
    grouping by driver keeps variants apart; `options` is emptied (labelling twice is a no-op)."""
    options = df["options"].fillna("")
    if not (options != "").any():
        return df
    df = df.copy()
    df["driver"] = df["driver"].where(options == "", df["driver"] + "[" + options + "]")
    df["options"] = ""
    return df
