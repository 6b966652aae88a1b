"""How many requests the server holds at once, and how long a refused client should wait.

A request holds a place from the moment it is admitted (before its upload is read) until its
decoding has finished, so that the places bound the spool files on disk as well as the work
waiting for a decoding thread: `workers` decode, `queue_size` more upload or wait, and the next one
is refused at once with 503 and a Retry-After estimated from how long requests have been taking.
"""

from __future__ import annotations

import math
import threading

# Until a request has been timed, one is assumed to take this long.
FIRST_ESTIMATE_SECONDS = 1.0
# Weight of the newest request in the running mean of request times.
SMOOTHING = 0.2
MAX_RETRY_AFTER_SECONDS = 600


class Admission:
    """A counter of the requests in the server, safe to release from the decoding threads."""

    def __init__(self, workers: int, queue_size: int):
        self.workers = workers
        self.capacity = workers + queue_size
        self._held = 0
        self._mean_seconds = FIRST_ESTIMATE_SECONDS
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """Requests admitted and not yet finished: uploading, waiting or decoding."""
        with self._lock:
            return self._held

    def enter(self) -> bool:
        """Takes a place; False when all are taken."""
        with self._lock:
            if self._held >= self.capacity:
                return False
            self._held += 1
            return True

    def leave(self, seconds: float | None = None) -> None:
        """Gives a place back; `seconds`, when the request was decoded, is how long it took."""
        with self._lock:
            self._held -= 1
            if seconds is not None:
                self._mean_seconds += SMOOTHING * (seconds - self._mean_seconds)

    def retry_after(self) -> int:
        """Whole seconds until a place is likely free: the requests ahead, `workers` at a time."""
        with self._lock:
            rounds = max(1, self._held - self.workers + 1) / self.workers
            return min(MAX_RETRY_AFTER_SECONDS, max(1, math.ceil(self._mean_seconds * rounds)))
