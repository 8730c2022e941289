"""strata's storage layer: the driver contract, selection, and the built-in drivers.

Importing the package registers every built-in driver; a driver's heavy dependencies
(btrfsutil, ...) load only when that driver is built.
"""

from . import errors
from .changes import Change
from .driver import Driver, validate_id
from .errors import AmbiguousPriorStorage, LayerNotMounted
from .registry import (
    DEFAULT_ROOT,
    Registration,
    get_driver,
    register,
    registered,
    registration,
)

__all__ = [
    "DEFAULT_ROOT",
    "AmbiguousPriorStorage",
    "Change",
    "Driver",
    "LayerNotMounted",
    "Registration",
    "errors",
    "get_driver",
    "register",
    "registered",
    "registration",
    "validate_id",
]

# Built-in drivers register themselves on import (after the names above exist).
from . import (
    aufs,  # noqa: F401
    btrfs,  # noqa: F401
    devmapper,  # noqa: F401
    overlay2,  # noqa: F401
    vfs,  # noqa: F401
)
