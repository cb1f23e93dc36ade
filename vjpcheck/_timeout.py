"""A per-example time limit, for rules that never finish."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class ExampleTimeout(BaseException):
    """One example ran past its time limit.

    It derives from BaseException, as KeyboardInterrupt does, so that Hypothesis stops
    at once instead of shrinking: every shrinking step could run as long again.
    """


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ExampleTimeout in the block after ``seconds``, using SIGALRM.

    NOTE: the signal interrupts Python code only. A compiled XLA computation that never
    returns, or code outside the main thread, is not stopped.
    """
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise ExampleTimeout(f"the example ran for more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
