"""``SharedTier``: one cache's entries in Redis, with fleet-wide single-flight.

Every operation is one script call (:mod:`.scripts`), built here without I/O
as a :class:`~.backend.Call` and sent by the backend's sync or async face:

- :meth:`SharedTier.lookup`: fresh / stale / missing in one round trip;
  asked for a lease, a missing key also settles who loads it.
- :meth:`SharedTier.set`, :meth:`SharedTier.delete`, :meth:`SharedTier.clear`
  (and ``RedisBackend.flush``): write, then publish an invalidation that
  every other process's listeners receive.
- :meth:`SharedTier.fill` / :meth:`SharedTier.release`: end a load. The write
  lands only while the caller's lease is still there (compare-and-set in the
  script, as rueidisaside does), so a ``set``, ``delete``, ``clear`` or
  ``flush`` during the load wins over its result.
- :meth:`SharedTier.get_or_load`: the whole protocol -- a shared hit in 1
  round trip, a miss that loads in 2, a caller that waits for another
  process's load in 2 plus the wait (woken by the filler's invalidation, or
  at the holder's lease expiry: a dead holder is taken over).

The decisions of ``get_or_load`` live in :class:`Acquisition`, shared by the
sync and the async twin, which differ only in how they wait and call.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, TypeVar

from seerrperf import _validate
from seerrperf._errors import ConfigurationError

from .backend import FALLBACK, Call, Subscription
from .keyspace import digest as key_digest
from .scripts import CLEAR, FILL, LOOKUP, RELEASE, SET
from .waiters import TaskWaiter, ThreadWaiter

if TYPE_CHECKING:
    from .backend import RedisBackend

__all__ = [
    "Acquisition",
    "Invalidation",
    "Lease",
    "SharedLoad",
    "SharedLookup",
    "SharedTier",
]

_T = TypeVar("_T")

LookupState: TypeAlias = Literal["fresh", "stale", "missing", "fallback"]
LoadSource: TypeAlias = Literal["shared", "stale", "loader", "fallback"]
SetOutcome: TypeAlias = Literal["stored", "local_only", "fallback"]
FillOutcome: TypeAlias = Literal["stored", "lost", "local_only", "fallback"]
InvalidationKind: TypeAlias = Literal["keys", "clear", "flush", "resync"]

_WAKE_MARGIN: Final = 0.05  # seconds past a holder's lease expiry before looking again
_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class Lease:
    """This process's right to load one key for the whole fleet, until it expires.

    Obtained from :meth:`SharedTier.lookup` (``lease=True``) or as a
    refresh from :meth:`SharedTier.get_or_load`; ended by
    :meth:`SharedTier.fill` or :meth:`SharedTier.release` (or by its expiry,
    ``lease_time`` after it was last renewed).

    Attributes:
        cache: The cache's name.
        digest: The key's digest.
        token: The lease's value in Redis (random, plus the generation).
        generation: The cache's generation when the lease was taken: a
            ``clear`` or ``flush`` since then refuses the fill.
    """

    cache: str
    digest: str
    token: str
    generation: str


@dataclass(frozen=True, slots=True)
class SharedLookup:
    """What one :meth:`SharedTier.lookup` found.

    Attributes:
        state: ``"fresh"``; ``"stale"`` (past its expiry, inside the caller's
            stale-while-revalidate window); ``"missing"``; or ``"fallback"``
            (Redis unavailable: use your own tier).
        value: The value (fresh or stale), else ``None``.
        ttl: Seconds it stays fresh by the server's clock (fresh), or minus
            the seconds since it expired (stale); 0 otherwise.
        lease: Set when this caller won the key's lease: load, then
            :meth:`SharedTier.fill` or :meth:`SharedTier.release`. With a
            stale value, the lease is the fleet's one refresh.
        wait: Missing while another process loads: seconds its lease has left.
    """

    state: LookupState
    value: Any = None
    ttl: float = 0.0
    lease: Lease | None = None
    wait: float = 0.0


@dataclass(frozen=True, slots=True)
class SharedLoad:
    """What :meth:`SharedTier.get_or_load` returned, and where it came from.

    Attributes:
        value: The value.
        source: ``"shared"`` (a fresh shared entry, maybe another process's
            load), ``"stale"`` (a stale shared entry: inside the
            stale-while-revalidate window, or inside the stale-if-error
            window after the loader failed), ``"loader"`` (this call ran the
            loader) or ``"fallback"`` (Redis unavailable: the loader ran
            locally).
        ttl: Seconds the value stays fresh by the server's clock (for a
            shared value: what is left; for a loaded one: the ``ttl``
            asked); negative for a stale value. Keep a local copy no longer.
        refresh: A stale value whose fleet-wide refresh this process won:
            run :meth:`SharedTier.refresh` (or ``arefresh``) with it in the
            background. ``None`` otherwise.
        stored: For ``"loader"``: whether the value reached the shared tier
            (``False``: the lease was lost to a ``set``/``delete``/``clear``,
            the value is not serializable, Redis failed, or ``ttl`` was 0).
    """

    value: Any
    source: LoadSource
    ttl: float
    refresh: Lease | None = None
    stored: bool = False


@dataclass(frozen=True, slots=True)
class Invalidation:
    """An invalidation a listener receives (from :meth:`SharedTier.subscribe`).

    Attributes:
        kind: ``"keys"`` (these keys changed: drop them), ``"clear"`` (the
            cache was cleared), ``"flush"`` (every cache was) or ``"resync"``
            (this process may have missed messages: drop the whole local tier).
        cache: The cache concerned (``None`` for ``flush`` and ``resync``).
        digests: For ``"keys"``: the digests (:meth:`SharedTier.digest`) of
            the keys concerned.
    """

    kind: InvalidationKind
    cache: str | None
    digests: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Reply:
    """A lookup's reply, read: the script's code, the value, and what came with it."""

    code: int  # -1 fallback, else the script's code
    value: Any = _MISSING
    ms: int = 0  # fresh: ms left; stale: ms late
    lease: Lease | None = None
    wait_ms: int = 0
    backup: Any = _MISSING  # past the swr window, inside stale-if-error


class SharedTier:
    """One cache's shared tier in Redis (from :meth:`RedisBackend.tier`).

    Keys are a cache's own (str, int, bytes, bool, None or tuples of them);
    Redis sees only their digest (:meth:`digest`). Values cross processes
    through the backend's serializer. Every method is one round trip unless
    it says otherwise, never raises because of Redis, and has an
    ``a``-prefixed async twin.
    """

    __slots__ = ("_backend", "_keyspace", "name")

    def __init__(self, backend: RedisBackend, name: str) -> None:
        self._backend = backend
        self._keyspace = backend._keyspace
        #: The cache's name.
        self.name: Final = name

    def __repr__(self) -> str:
        return f"<SharedTier {self.name!r} of {self._backend!r}>"

    @property
    def backend(self) -> RedisBackend:
        """The backend it belongs to."""
        return self._backend

    @staticmethod
    def digest(key: object) -> str | None:
        """Return the digest Redis and invalidation messages know ``key`` by.

        The same in every process and on every host (BLAKE2b of a canonical
        encoding, never ``hash()``). ``None`` when ``key`` has no canonical
        encoding (it is not a str, int, bytes, bool, None or a tuple of
        those): such a key can only live in a local tier.
        """
        try:
            return key_digest(key)
        except ConfigurationError:
            return None

    def _digest(self, key: object) -> str:
        found = self.digest(key)
        if found is None:
            raise ConfigurationError(
                "key must be str, int, bytes, bool, None or a tuple of those to be shared, "
                f"got {type(key).__name__} (check with SharedTier.digest(key) first)"
            )
        return found

    # -- invalidations -----------------------------------------------------------------

    def subscribe(self, callback: Callable[[Invalidation], None]) -> Subscription:
        """Call ``callback`` for every invalidation of this cache made by another process.

        It receives this cache's ``keys`` and ``clear`` invalidations, every
        ``flush``, and a ``resync`` whenever this process's subscription was
        lost or is back (drop the whole local tier then: a message may have
        been missed). It runs in the backend's subscriber thread: keep it
        short, thread-safe, and do not call Redis from it. Starts that thread
        if it is not running.

        Returns:
            A :class:`Subscription`; ``close()`` it to stop.

        Raises:
            ConfigurationError: ``callback`` is not callable.
        """
        return self._backend._subscribe(self.name, callback)

    # -- lookup ------------------------------------------------------------------------

    def lookup(
        self,
        key: object,
        *,
        lease: bool = False,
        stale_while_revalidate: float = 0.0,
        stale_if_error: float = 0.0,
    ) -> SharedLookup:
        """Return what the shared tier holds for ``key`` (fresh, stale, missing, fallback).

        Args:
            key: The key.
            lease: Also settle who loads a missing key: the result then
                carries a :class:`Lease` (this caller loads) or a ``wait``
                (another process does). For a stale value, the lease is the
                fleet's one refresh.
            stale_while_revalidate: Seconds past expiry during which a value is
                returned as ``"stale"``; older ones count as missing.
            stale_if_error: Accepted for symmetry with :meth:`get_or_load`
                (which serves such a value if its loader fails); unused here.

        Raises:
            ConfigurationError: ``key`` cannot be shared, or a window is not a
                finite number of seconds ``>= 0``.
        """
        call = self._lookup_call(key, lease, stale_while_revalidate, stale_if_error)
        return _public(self._backend._run(call))

    async def alookup(
        self,
        key: object,
        *,
        lease: bool = False,
        stale_while_revalidate: float = 0.0,
        stale_if_error: float = 0.0,
    ) -> SharedLookup:
        """The async twin of :meth:`lookup`."""
        call = self._lookup_call(key, lease, stale_while_revalidate, stale_if_error)
        if not lease:
            return _public(await self._backend._arun(call))
        return _public(await self._backend._arun_protected(call, self._abandoned))

    def _abandoned(self, reply: _Reply) -> None:
        """A lookup won a lease after its caller was cancelled: give it back."""
        if reply.lease is not None:
            self._backend._spawn(self.arelease(reply.lease))

    def _lookup_call(self, key: object, lease: bool, swr: float, sie: float) -> Call[_Reply]:
        _validate.flag("lease", lease)
        swr = _validate.duration("stale_while_revalidate", swr)
        sie = _validate.duration("stale_if_error", sie)
        return self._lookup_digest(self._digest(key), lease, swr, sie)

    def _lookup_digest(self, digest: str, lease: bool, swr: float, sie: float) -> Call[_Reply]:
        backend = self._backend
        self._backend._ensure_subscriber()
        token = f"{backend.source_id}.{secrets.token_hex(8)}" if lease else ""
        args = [
            backend.serializer.name,
            _ms(swr),
            _ms(sie),
            token,
            max(1, _ms(backend.lease_time)),
            backend.max_value_bytes,
        ]
        return Call(
            LOOKUP,
            self._keyspace.entry_keys(self.name, digest),
            args,
            lambda reply: self._read_lookup(reply, digest, token),
        )

    def _read_lookup(self, reply: Any, digest: str, token: str) -> _Reply:
        backend = self._backend
        if reply is FALLBACK:
            return _Reply(-1)
        code, data, ms = int(reply[0]), reply[1], int(reply[2])
        value = self._decode(data)
        if code in (1, 2, 3) and value is _MISSING:  # unreadable: as if missing, no lease
            backend._count("shared_misses")
            return _Reply(0)
        lease = None
        if code in (2, 4):
            generation = _text(reply[3])
            lease = Lease(self.name, digest, f"{token}|{generation}", generation)
        if code == 1:
            backend._count("shared_hits")
            return _Reply(1, value, ms)
        if code in (2, 3):
            backend._count("stale_hits")
            return _Reply(code, value, ms, lease)
        backend._count("shared_misses")
        wait_ms = int(reply[3]) if code == 5 else 0
        return _Reply(code, ms=ms, lease=lease, wait_ms=wait_ms, backup=value)

    def _decode(self, data: Any) -> Any:
        if data is None:
            return _MISSING
        try:
            return self._backend.serializer.loads(data)
        except Exception:
            self._backend._log_once(
                f"decode:{self.name}", "a shared entry of cache %r could not be read", self.name
            )
            return _MISSING

    # -- writes ------------------------------------------------------------------------

    def set(self, key: object, value: Any, ttl: float, *, stale_window: float = 0.0) -> SetOutcome:
        """Store ``value`` for every process and invalidate their local copies.

        A load running for ``key`` anywhere will not store its result: the
        explicit ``set`` wins.

        Args:
            key: The key.
            value: The value; one the serializer refuses (or larger than
                ``max_value_bytes``) is not shared: the shared entry is deleted
                instead, so no process reads an older value.
            ttl: Seconds it stays fresh (server clock); 0 deletes instead.
            stale_window: Seconds it is kept after that, to be served stale.

        Returns:
            ``"stored"``, ``"local_only"`` (not serializable: deleted in the
            shared tier instead) or ``"fallback"`` (Redis unavailable; the
            other processes' copies are invalidated when it is back).

        Raises:
            ConfigurationError: ``key`` cannot be shared, or ``ttl`` or
                ``stale_window`` is not a finite number of seconds ``>= 0``.
        """
        outcome: SetOutcome = self._backend._run(self._set_call(key, value, ttl, stale_window))
        if outcome == "fallback":
            self._backend._replay()  # a full server still takes the delete
        return outcome

    async def aset(
        self, key: object, value: Any, ttl: float, *, stale_window: float = 0.0
    ) -> SetOutcome:
        """The async twin of :meth:`set`."""
        outcome: SetOutcome = await self._backend._arun(
            self._set_call(key, value, ttl, stale_window)
        )
        if outcome == "fallback":
            await self._backend._areplay()
        return outcome

    def _set_call(self, key: object, value: Any, ttl: float, stale_window: float) -> Call[Any]:
        ttl = _validate.duration("ttl", ttl)
        keep = _validate.duration("stale_window", stale_window)
        digest = self._digest(key)
        data = self._encode(value) if ttl > 0 else None
        if data is None:
            outcome: SetOutcome = "local_only" if ttl > 0 else "stored"
            return self._delete_call([digest], outcome)
        backend = self._backend

        def parse(reply: Any) -> SetOutcome:
            backend._waiters.wake_keys(self.name, (digest,))
            if reply is FALLBACK:
                backend._pending.delete(self.name, (digest,))
                return "fallback"
            backend._count("invalidations_sent")
            return "stored"

        ttl_ms = max(1, _ms(ttl))
        args = [
            backend.serializer.name,
            data,
            ttl_ms,
            ttl_ms + _ms(keep),
            self._keyspace.channel,
            backend._message("keys", self.name, (digest,)),
        ]
        return Call(SET, self._keyspace.entry_keys(self.name, digest), args, parse)

    def _encode(self, value: Any) -> bytes | None:
        backend = self._backend
        try:
            data = backend.serializer.dumps(value)
        except Exception:
            backend._count("local_only")
            return None
        if len(data) > backend.max_value_bytes:
            backend._count("local_only")
            return None
        return data

    def delete(self, key: object) -> bool:
        """Delete ``key`` for every process; a load running for it will not store its result.

        Returns:
            ``True`` when Redis applied it; ``False`` when it was unavailable
            (applied when it is back, before anything is read from it).

        Raises:
            ConfigurationError: ``key`` cannot be shared.
        """
        return self.delete_many((key,))

    async def adelete(self, key: object) -> bool:
        """The async twin of :meth:`delete`."""
        return await self.adelete_many((key,))

    def delete_many(self, keys: Iterable[object]) -> bool:
        """Delete several keys, one round trip per 256 keys; as :meth:`delete`."""
        digests = [self._digest(key) for key in keys]
        done = True
        for call in self._delete_calls(digests):
            done = self._backend._run(call) and done
        return done

    async def adelete_many(self, keys: Iterable[object]) -> bool:
        """The async twin of :meth:`delete_many`."""
        digests = [self._digest(key) for key in keys]
        done = True
        for call in self._delete_calls(digests):
            done = await self._backend._arun(call) and done
        return done

    def _delete_calls(self, digests: list[str]) -> list[Call[bool]]:
        backend = self._backend

        def parse_for(chunk: list[str]) -> Callable[[Any], bool]:
            def parse(reply: Any) -> bool:
                backend._waiters.wake_keys(self.name, chunk)
                if reply is FALLBACK:
                    backend._pending.delete(self.name, chunk)
                    return False
                backend._count("invalidations_sent")
                return True

            return parse

        return list(backend._delete_calls(self.name, digests, parse_for))

    def _delete_call(self, digests: list[str], outcome: SetOutcome) -> Call[SetOutcome]:
        (call,) = self._delete_calls(digests)

        def parse(reply: Any) -> SetOutcome:
            return outcome if call.parse(reply) else "fallback"

        return Call(call.script, call.keys, call.args, parse)

    def clear(self) -> bool:
        """Invalidate every entry of this cache, in every process.

        One round trip whatever the cache's size: its generation moves on,
        which makes every older entry invisible (Redis expires them later).

        Returns:
            ``True`` when Redis applied it; ``False`` when it was unavailable
            (applied when it is back, before anything is read from it).
        """
        return self._backend._run(self._clear_call())

    async def aclear(self) -> bool:
        """The async twin of :meth:`clear`."""
        return await self._backend._arun(self._clear_call())

    def _clear_call(self) -> Call[bool]:
        backend = self._backend

        def parse(reply: Any) -> bool:
            backend._waiters.wake_cache(self.name)
            if reply is FALLBACK:
                backend._pending.clear(self.name)
                return False
            backend._count("invalidations_sent")
            return True

        args = [self._keyspace.channel, backend._message("clear", self.name)]
        return Call(CLEAR, [self._keyspace.generation(self.name)], args, parse)

    # -- ending a load -----------------------------------------------------------------

    def fill(
        self, lease: Lease, value: Any, ttl: float, *, stale_window: float = 0.0
    ) -> FillOutcome:
        """Store a load's result if ``lease`` is still held, and end the lease.

        Args:
            lease: The lease from :meth:`lookup` or a refresh.
            value: The loaded value.
            ttl: Seconds it stays fresh (server clock); 0 stores nothing.
            stale_window: Seconds it is kept after that, to be served stale.

        Returns:
            ``"stored"``; ``"lost"`` (the lease was gone: a ``set``,
            ``delete``, ``clear`` or ``flush`` won, or it expired and another
            process took over -- nothing was written); ``"local_only"`` (not
            serializable, or ``ttl`` 0: the lease was released); or
            ``"fallback"``.

        Raises:
            ConfigurationError: ``lease`` is not a :class:`Lease` of this
                cache, or a duration is invalid.
        """
        call = self._fill_call(lease, value, ttl, stale_window)
        try:
            return self._backend._run(call)
        finally:
            self._backend._unhold(self._keyspace.lease(self.name, lease.digest))

    async def afill(
        self, lease: Lease, value: Any, ttl: float, *, stale_window: float = 0.0
    ) -> FillOutcome:
        """The async twin of :meth:`fill`."""
        call = self._fill_call(lease, value, ttl, stale_window)
        try:
            return await self._backend._arun_protected(call)  # lands even if we are cancelled
        finally:
            self._backend._unhold(self._keyspace.lease(self.name, lease.digest))

    def _check_lease(self, lease: object) -> Lease:
        _validate.instance("lease", lease, Lease, "a Lease")
        assert isinstance(lease, Lease)
        if lease.cache != self.name:
            raise ConfigurationError(
                f"lease must be a lease of cache {self.name!r}, got one of {lease.cache!r}"
            )
        return lease

    def _fill_call(self, lease: Lease, value: Any, ttl: float, stale_window: float) -> Call[Any]:
        lease = self._check_lease(lease)
        ttl = _validate.duration("ttl", ttl)
        keep = _validate.duration("stale_window", stale_window)
        data = self._encode(value) if ttl > 0 else None
        if data is None:
            release = self._release_call(lease)

            def parse_released(reply: Any) -> FillOutcome:
                release.parse(reply)
                return "fallback" if reply is FALLBACK else "local_only"

            return Call(release.script, release.keys, release.args, parse_released)
        backend = self._backend

        def parse(reply: Any) -> FillOutcome:
            backend._waiters.wake_keys(self.name, (lease.digest,))
            if reply is FALLBACK:
                return "fallback"
            if int(reply) == 1:
                backend._count("invalidations_sent")
                return "stored"
            backend._count("leases_lost")
            return "lost"

        ttl_ms = max(1, _ms(ttl))
        args = [
            lease.token,
            lease.generation,
            backend.serializer.name,
            data,
            ttl_ms,
            ttl_ms + _ms(keep),
            self._keyspace.channel,
            backend._message("keys", self.name, (lease.digest,)),
            backend._message("wake", self.name, (lease.digest,)),
        ]
        return Call(FILL, self._keyspace.entry_keys(self.name, lease.digest), args, parse)

    def release(self, lease: Lease) -> None:
        """Give ``lease`` up without a value (the load failed): a waiter loads instead.

        Raises:
            ConfigurationError: ``lease`` is not a :class:`Lease` of this cache.
        """
        call = self._release_call(self._check_lease(lease))
        try:
            self._backend._run(call)
        finally:
            self._backend._unhold(call.keys[0])

    async def arelease(self, lease: Lease) -> None:
        """The async twin of :meth:`release`."""
        call = self._release_call(self._check_lease(lease))
        try:
            await self._backend._arun_protected(call)  # given back even if we are cancelled
        finally:
            self._backend._unhold(call.keys[0])

    def _release_call(self, lease: Lease) -> Call[None]:
        backend = self._backend

        def parse(reply: Any) -> None:
            backend._waiters.wake_keys(self.name, (lease.digest,))

        args = [
            lease.token,
            self._keyspace.channel,
            backend._message("wake", self.name, (lease.digest,)),
        ]
        return Call(RELEASE, [self._keyspace.lease(self.name, lease.digest)], args, parse)

    # -- the whole protocol ------------------------------------------------------------

    def get_or_load(
        self,
        key: object,
        loader: Callable[[], _T],
        *,
        ttl: float,
        stale_while_revalidate: float = 0.0,
        stale_if_error: float = 0.0,
        stale_window: float | None = None,
    ) -> SharedLoad:
        """Return the shared value of ``key``, loading it once for the whole fleet on a miss.

        Every process (and thread) missing ``key`` at once agrees on one
        loader run: the lease's winner runs ``loader`` and stores the result;
        the others wait until it is stored (woken by its invalidation
        message) and read it. A holder that dies is taken over when its
        lease expires. When Redis is unavailable ``loader`` runs here, and the
        result is not shared (``source="fallback"``).

        Args:
            key: The key (one :meth:`digest` accepts).
            loader: Called without arguments to produce the value (sync).
            ttl: Seconds a loaded value stays fresh (server clock).
            stale_while_revalidate: Seconds past expiry during which the stale
                value is returned at once; this process may win the fleet's
                one refresh (``SharedLoad.refresh``: run :meth:`refresh`).
            stale_if_error: Seconds past expiry during which a stale value is
                returned if ``loader`` raises.
            stale_window: Seconds a stored value is kept past its expiry;
                by default the larger of the two windows.

        Returns:
            A :class:`SharedLoad`.

        Raises:
            ConfigurationError: ``key`` cannot be shared, ``loader`` is not
                callable or returned an awaitable, or a duration is invalid.
            Exception: Whatever ``loader`` raised, outside the stale-if-error
                window.
        """
        acquisition = self._acquisition(
            key, loader, ttl, stale_while_revalidate, stale_if_error, stale_window
        )
        waiter = ThreadWaiter()
        waiters = self._backend._waiters
        waiters.add(self.name, acquisition.digest, waiter)
        try:
            while True:
                waiter.clear()
                step = acquisition.decide(self._backend._run(acquisition.lookup()))
                if not isinstance(step, _Wait):
                    break
                acquisition.woken = waiter.wait(step.seconds)
        finally:
            waiters.remove(self.name, acquisition.digest, waiter)
        if isinstance(step, SharedLoad):
            return step
        self._backend._count("loads")
        lease = step.lease
        if lease is not None:
            self._backend._hold(self._keyspace.lease(self.name, lease.digest), lease.token)
        try:
            value = loader()
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise ConfigurationError(
                    "get_or_load() got an async loader; use aget_or_load() for coroutine functions"
                )
        except Exception as exc:
            if lease is not None:
                self.release(lease)
            return acquisition.failed(exc)
        except BaseException:
            if lease is not None:
                self.release(lease)
            raise
        if lease is None:
            return acquisition.loaded(value, step.source, None)
        return acquisition.loaded(
            value,
            step.source,
            self.fill(lease, value, acquisition.ttl, stale_window=acquisition.keep),
        )

    async def aget_or_load(
        self,
        key: object,
        loader: Callable[[], Awaitable[_T]],
        *,
        ttl: float,
        stale_while_revalidate: float = 0.0,
        stale_if_error: float = 0.0,
        stale_window: float | None = None,
    ) -> SharedLoad:
        """The async twin of :meth:`get_or_load`: ``loader()`` returns an awaitable.

        Cancelling the call never strands a lease: one won in a round trip the
        caller no longer waits for, or held by a load that is cancelled, is
        given back (that round trip completes on its own), so another process
        or caller loads instead.
        """
        acquisition = self._acquisition(
            key, loader, ttl, stale_while_revalidate, stale_if_error, stale_window
        )
        waiter = TaskWaiter()
        waiters = self._backend._waiters
        waiters.add(self.name, acquisition.digest, waiter)
        try:
            while True:
                waiter.clear()
                reply = await self._backend._arun_protected(acquisition.lookup(), self._abandoned)
                step = acquisition.decide(reply)
                if not isinstance(step, _Wait):
                    break
                acquisition.woken = await waiter.wait(step.seconds)
        finally:
            waiters.remove(self.name, acquisition.digest, waiter)
        if isinstance(step, SharedLoad):
            return step
        self._backend._count("loads")
        lease = step.lease
        if lease is not None:
            self._backend._hold(self._keyspace.lease(self.name, lease.digest), lease.token)
        try:
            value = await loader()
        except Exception as exc:
            if lease is not None:
                await self.arelease(lease)
            return acquisition.failed(exc)
        except BaseException:
            if lease is not None:
                await self.arelease(lease)
            raise
        if lease is None:
            return acquisition.loaded(value, step.source, None)
        outcome = await self.afill(lease, value, acquisition.ttl, stale_window=acquisition.keep)
        return acquisition.loaded(value, step.source, outcome)

    def refresh(
        self, lease: Lease, loader: Callable[[], _T], *, ttl: float, stale_window: float = 0.0
    ) -> FillOutcome:
        """Run a stale-while-revalidate refresh this process won, and store its result.

        Args:
            lease: ``SharedLoad.refresh``.
            loader: Called without arguments to produce the value (sync).
            ttl: Seconds the new value stays fresh.
            stale_window: Seconds it is kept after that.

        Returns:
            As :meth:`fill`.

        Raises:
            Exception: Whatever ``loader`` raised (the lease is released first,
                so the next stale read anywhere refreshes again).
        """
        lease = self._check_lease(lease)
        _validate.function("loader", loader)
        self._backend._hold(self._keyspace.lease(self.name, lease.digest), lease.token)
        self._backend._count("loads")
        try:
            value = loader()
        except BaseException:
            self.release(lease)
            raise
        return self.fill(lease, value, ttl, stale_window=stale_window)

    async def arefresh(
        self,
        lease: Lease,
        loader: Callable[[], Awaitable[_T]],
        *,
        ttl: float,
        stale_window: float = 0.0,
    ) -> FillOutcome:
        """The async twin of :meth:`refresh`."""
        lease = self._check_lease(lease)
        _validate.function("loader", loader)
        self._backend._hold(self._keyspace.lease(self.name, lease.digest), lease.token)
        self._backend._count("loads")
        try:
            value = await loader()
        except BaseException:
            await self.arelease(lease)
            raise
        return await self.afill(lease, value, ttl, stale_window=stale_window)

    def _acquisition(
        self,
        key: object,
        loader: object,
        ttl: float,
        swr: float,
        sie: float,
        stale_window: float | None,
    ) -> Acquisition:
        _validate.function("loader", loader)
        ttl = _validate.duration("ttl", ttl)
        swr = _validate.duration("stale_while_revalidate", swr)
        sie = _validate.duration("stale_if_error", sie)
        keep = (
            max(swr, sie)
            if stale_window is None
            else _validate.duration("stale_window", stale_window)
        )
        return Acquisition(self, self._digest(key), ttl, swr, sie, keep)


@dataclass(frozen=True, slots=True)
class _Wait:
    seconds: float


@dataclass(frozen=True, slots=True)
class _Load:
    lease: Lease | None
    source: LoadSource


class Acquisition:
    """The decisions of one ``get_or_load``, shared by the sync and async twins; no I/O.

    The twin sends :meth:`lookup`, hands the reply to :meth:`decide`, and
    does what it says: return a :class:`SharedLoad`, wait (then look again),
    or run the loader (with a lease: then fill; without: fallback or a wait
    that ran out), ending with :meth:`loaded` or :meth:`failed`.
    """

    __slots__ = (
        "_backup",
        "_deadline",
        "_tier",
        "_waited",
        "digest",
        "keep",
        "sie",
        "swr",
        "ttl",
        "woken",
    )

    def __init__(
        self, tier: SharedTier, digest: str, ttl: float, swr: float, sie: float, keep: float
    ) -> None:
        self._tier = tier
        self.digest = digest
        self.ttl = ttl
        self.swr = swr
        self.sie = sie
        self.keep = keep
        self._deadline = tier.backend.clock() + tier.backend.lease_wait
        self._waited = False
        self._backup: Any = _MISSING
        self.woken = False  # whether the last wait ended with a wake-up

    def lookup(self) -> Call[_Reply]:
        """The lookup to send (it asks for the lease)."""
        return self._tier._lookup_digest(self.digest, True, self.swr, self.sie)

    def decide(self, reply: _Reply) -> SharedLoad | _Wait | _Load:
        """What to do after a lookup."""
        backend = self._tier.backend
        code = reply.code
        if code == -1:
            return _Load(None, "fallback")
        if code == 1:
            return SharedLoad(reply.value, "shared", reply.ms / 1000)
        if code in (2, 3):
            return SharedLoad(reply.value, "stale", -reply.ms / 1000, refresh=reply.lease)
        if reply.backup is not _MISSING:
            self._backup = reply.backup
        if code == 4:
            if self._waited and not self.woken:
                backend._count("takeovers")  # the holder's lease ran out without a result
            return _Load(reply.lease, "loader")
        if code == 0:  # an unreadable entry: load, without a lease
            return _Load(None, "loader")
        left = self._deadline - backend.clock()
        if left <= 0:
            backend._count("lease_timeouts")
            return _Load(None, "loader")
        if not self._waited:
            self._waited = True
            backend._count("lease_waits")
        return _Wait(min(left, reply.wait_ms / 1000 + _WAKE_MARGIN))

    def loaded(self, value: Any, source: LoadSource, outcome: FillOutcome | None) -> SharedLoad:
        """The result after the loader returned ``value`` (``outcome``: its fill's, if any)."""
        return SharedLoad(value, source, self.ttl, stored=outcome == "stored")

    def failed(self, error: Exception) -> SharedLoad:
        """The result after the loader raised: a stale value inside stale-if-error, or raise."""
        if self._backup is _MISSING:
            raise error
        return SharedLoad(self._backup, "stale", 0.0)


def _public(reply: _Reply) -> SharedLookup:
    code = reply.code
    if code == -1:
        return SharedLookup("fallback")
    if code == 1:
        return SharedLookup("fresh", reply.value, reply.ms / 1000)
    if code in (2, 3):
        return SharedLookup("stale", reply.value, -reply.ms / 1000, reply.lease)
    return SharedLookup("missing", lease=reply.lease, wait=reply.wait_ms / 1000)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
