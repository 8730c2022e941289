"""Ctrl-C a running command once it has got somewhere, and reap it whatever happens.

Both the harness's and the peers' interrupt tests need the same dance: poll until the
command reaches the state worth interrupting (failing at once if it exits first), send
SIGINT, collect its stderr, and never leave the process behind when an assertion fails.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

POLL = 0.02  # seconds between looks at the command's progress


def interrupt_when(proc: subprocess.Popen[str], ready: Callable[[], bool], *, within: float,
                   settle: Callable[[], None] = lambda: None, timeout: float = 180) -> str:
    """SIGINT `proc` once `ready()` holds (after `settle()` checks the state it interrupts);
    its stderr. An AssertionError if it never gets ready within `within` seconds."""
    try:
        deadline = time.monotonic() + within
        while not ready():
            assert proc.poll() is None, proc.communicate()
            if time.monotonic() > deadline:
                raise AssertionError("the command never got to where it was to be interrupted")
            time.sleep(POLL)
        settle()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=timeout)
        return err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
