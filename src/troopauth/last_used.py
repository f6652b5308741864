"""When each token was last used: noted on the hot path, written off it.

A successful verify or authentication notes the token's id in a dict (one
store of a key: no clock read, no I/O, no lock). One background thread per
process wakes every second and, for each facade whose interval has passed,
takes the noted ids and hands them to the store's ``record_last_used`` with
one stamp, the facade's clock at that moment. So a token is written at most
once per interval however often it is used, ``last_used_at`` is right to
within the interval, and a verify never waits for a write.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from .errors import InvalidArgument, TroopAuthError

__all__ = ["DEFAULT_INTERVAL", "LastUse", "check_interval"]

log = logging.getLogger("troopauth")

#: How often, at most, a token's last use is written.
DEFAULT_INTERVAL = timedelta(seconds=60)
#: How often the background thread looks for work.
_TICK = 1.0


def check_interval(value: object) -> timedelta | None:
    """``None`` (not recorded) or a positive timedelta."""
    if value is None:
        return None
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidArgument("last_used_interval must be a positive timedelta or None")
    return value


class LastUse:
    """The noted uses of one facade, and their writer."""

    def __init__(
        self,
        record: Callable[[Mapping[str, datetime]], None],
        clock: Callable[[], datetime],
        interval: timedelta,
    ) -> None:
        #: token id -> None: the uses noted since the last write (the hot path
        #: stores into it directly).
        self.pending: dict[str, None] = {}
        self._record = record
        self._clock = clock
        self._interval = interval.total_seconds()
        self._due = time.monotonic() + self._interval
        _FLUSHER.add(self)

    def flush(self) -> None:
        """Write the noted uses now, stamped with the clock's time."""
        pending = self.pending
        taken: list[str] = []
        while pending:
            # popitem is atomic: a use noted meanwhile is taken now or next time.
            try:
                token_id, _ = pending.popitem()
            except KeyError:
                break
            taken.append(token_id)
        if taken:
            self._record(dict.fromkeys(taken, self._clock()))

    def _tick(self, now: float) -> None:
        if now < self._due:
            return
        self._due = now + self._interval
        try:
            self.flush()
        except TroopAuthError as exc:  # a closed or failing store: try next time
            log.debug("last-use stamps not written: %s", type(exc).__name__)


class _Flusher:
    """One daemon thread per process that writes every facade's stamps."""

    def __init__(self) -> None:
        self._users: weakref.WeakSet[LastUse] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, user: LastUse) -> None:
        with self._lock:
            self._users.add(user)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="troopauth-last-used", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(_TICK)
            now = time.monotonic()
            for user in list(self._users):
                try:
                    user._tick(now)
                except Exception:  # the thread must live on; logged
                    log.warning("last-use stamps failed", exc_info=True)

    def after_fork(self) -> None:
        """In a forked child: the parent's thread is not here; start anew if
        the child inherited facades that note uses."""
        self._lock = threading.Lock()
        self._thread = None
        users = list(self._users)
        if users:
            self.add(users[0])


_FLUSHER = _Flusher()
os.register_at_fork(after_in_child=_FLUSHER.after_fork)
