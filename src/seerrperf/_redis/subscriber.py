"""The background thread of a process: invalidations in, leases kept alive.

One daemon thread per backend, so it works in a process that never runs an
event loop (Django and Flask workers) as well as beside one. It

- subscribes to the namespace's invalidation channel and hands every message
  to its owner (who drops local entries and wakes waiters);
- tells its owner when the subscription is lost and when it is back, so a
  message missed in between never means a stale read (the owner resyncs);
- notices a silent connection (a frozen server, a dead network path) by
  pinging and watching for answers, not only a closed socket;
- runs its owner's housekeeping (renewing the leases of running loads)
  about every :data:`TICK` seconds, also while it reconnects.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Final, Protocol

__all__ = ["PING_INTERVAL", "TICK", "Subscriber", "SubscriberOwner"]

TICK: Final = 0.1
"""Seconds between housekeeping rounds, and the longest a read of the channel blocks."""

PING_INTERVAL: Final = 1.0
"""Seconds between pings on an idle subscription."""


class SubscriberOwner(Protocol):
    """What the thread calls; every method must not raise."""

    channel: str

    def open_pubsub(self) -> Any:
        """Return a new redis-py ``PubSub`` on a client that never retries by itself."""
        ...

    def on_message(self, data: object) -> None:
        """Handle one message's payload."""
        ...

    def on_subscribed(self) -> None:
        """The subscription is live (again): messages from now on arrive."""
        ...

    def on_lost(self, error: BaseException, was_subscribed: bool) -> None:
        """The subscription was lost (``was_subscribed``), or could not be made."""
        ...

    def housekeeping(self) -> None:
        """Periodic work (lease renewal)."""
        ...


class Subscriber:
    """Runs the subscription of one owner in a daemon thread.

    Args:
        owner: Whom to report to.
        timeout: Seconds to wait for the server's confirmation of a subscription.
        retry_interval: Seconds between attempts to subscribe again.
        name: The thread's name.
    """

    def __init__(
        self, owner: SubscriberOwner, *, timeout: float, retry_interval: float, name: str
    ) -> None:
        self._owner = owner
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.subscribed = False

    @property
    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Ask the thread to end and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._owner.open_pubsub()
                pubsub.subscribe(self._owner.channel)
                self._confirm(pubsub)
                self.subscribed = True
                self._owner.on_subscribed()
                self._pump(pubsub)
            except Exception as exc:  # every failure means "lost": report it, try again
                was_subscribed, self.subscribed = self.subscribed, False
                self._owner.on_lost(exc, was_subscribed)
            finally:
                self.subscribed = False
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            self._rest(self._retry_interval)

    def _confirm(self, pubsub: Any) -> None:
        deadline = time.monotonic() + self._timeout
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=TICK)
            if message is not None and message.get("type") == "subscribe":
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no subscription confirmed within {self._timeout:g} s")
            self._owner.housekeeping()

    def _pump(self, pubsub: Any) -> None:
        last_heard = time.monotonic()
        next_ping = last_heard + PING_INTERVAL
        silent_limit = PING_INTERVAL + 2 * self._timeout + TICK
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=TICK)
            now = time.monotonic()
            # Housekeeping after every message too: a flood of invalidations must not
            # starve the lease renewals (it returns at once unless one is due).
            self._owner.housekeeping()
            if message is not None:
                last_heard = now
                if message.get("type") == "message":
                    self._owner.on_message(message.get("data"))
                continue  # drain a burst before pinging
            if now - last_heard > silent_limit:
                raise TimeoutError(f"the subscription was silent for {now - last_heard:.1f} s")
            if now >= next_ping:
                pubsub.ping()
                next_ping = now + PING_INTERVAL

    def _rest(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(TICK, left))
            self._owner.housekeeping()
