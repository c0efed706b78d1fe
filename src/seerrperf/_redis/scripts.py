"""The Lua scripts: every shared-tier and limiter operation is one atomic round trip.

Each script reads the server's clock (``TIME``), so freshness, leases and
rate-limit slots are decided on one clock for the whole fleet, never on a
host's. Scripts use only commands of Redis 6.2 and Valkey 7.2 (``TIME``
before writes relies on effects replication, the default since Redis 5).
Numbers are written with ``%.0f``: Lua would print a large number in
exponent notation and lose digits.

Reply codes of :data:`LOOKUP`:

- 0 ``MISSING`` (no lease asked): ``{0, backup, late_ms}``
- 1 ``FRESH``: ``{1, data, ms_left}``
- 2 ``STALE_REFRESH``: stale inside the stale-while-revalidate window and this
  caller won the refresh lease: ``{2, data, late_ms, generation}``
- 3 ``STALE``: stale inside the window, no lease (another process is
  refreshing it, or none was asked): ``{3, data, late_ms}``
- 4 ``LEAD``: no usable value and this caller won the lease:
  ``{4, backup, late_ms, generation}``
- 5 ``WAIT``: no usable value and another process holds the lease:
  ``{5, backup, late_ms, lease_ms_left}``

``backup`` is a value past its stale-while-revalidate window but inside the
caller's stale-if-error window (served if the load fails), or nil.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ALL_SCRIPTS",
    "CLEAR",
    "DELETE",
    "FILL",
    "FLUSH",
    "LOOKUP",
    "RELEASE",
    "RENEW",
    "RESERVE",
    "SET",
    "Script",
]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1 (what ``EVALSHA`` names)."""

    name: str
    source: str
    sha: str


def _script(name: str, body: str) -> Script:
    source = _PRELUDE + body
    return Script(name, source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


_PRELUDE = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function now_ms()
  return math.floor(now_us() / 1000)
end
-- A missing counter starts at the server's time in microseconds, so a counter
-- lost (evicted, or a restart) never comes back with a value it had before.
local function generation(ns_key, cache_key, create)
  local ns = redis.call('GET', ns_key)
  local c = redis.call('GET', cache_key)
  if create then
    if not ns then ns = string.format('%.0f', now_us()); redis.call('SET', ns_key, ns) end
    if not c then c = string.format('%.0f', now_us()); redis.call('SET', cache_key, c) end
  end
  if not ns or not c then return false end
  return ns .. '.' .. c
end
local function bump(key)
  if redis.call('EXISTS', key) == 1 then
    redis.call('INCR', key)
  else
    redis.call('SET', key, string.format('%.0f', now_us()))
  end
end
-- HSET comes first of a script's writes: a full server (maxmemory, noeviction)
-- refuses a script's first memory-growing write, but not one after another write.
local function store(key, gen, codec, data, ttl_ms, keep_ms, now)
  redis.call('HSET', key, 'g', gen, 'f', string.format('%.0f', now + tonumber(ttl_ms)),
             's', codec, 'd', data)
  redis.call('PEXPIRE', key, keep_ms)
end
"""

LOOKUP: Final = _script(
    "lookup",
    # KEYS: entry, lease, namespace generation, cache generation
    # ARGV: codec, swr_ms, sie_ms, token ('' = no lease), lease_ms, max_bytes
    """
local want = ARGV[4] ~= ''
local now = now_ms()
local gen = generation(KEYS[3], KEYS[4], want)
local value, late = false, -1
if gen then
  local e = redis.call('HMGET', KEYS[1], 'g', 'f', 's', 'd')
  if e[1] == gen and e[3] == ARGV[1] and e[4] and #e[4] <= tonumber(ARGV[6]) then
    local f = tonumber(e[2])
    if now < f then return {1, e[4], f - now} end
    value, late = e[4], now - f
  end
end
if value and late < tonumber(ARGV[2]) then
  if want and redis.call('SET', KEYS[2], ARGV[4] .. '|' .. gen, 'NX', 'PX', ARGV[5]) then
    return {2, value, late, gen}
  end
  return {3, value, late}
end
if value and late >= tonumber(ARGV[3]) then value = false end
if not want then return {0, value, late} end
if redis.call('SET', KEYS[2], ARGV[4] .. '|' .. gen, 'NX', 'PX', ARGV[5]) then
  return {4, value, late, gen}
end
return {5, value, late, redis.call('PTTL', KEYS[2])}
""",
)

FILL: Final = _script(
    "fill",
    # KEYS: entry, lease, namespace generation, cache generation
    # ARGV: lease value, generation, codec, data, ttl_ms, keep_ms, channel, keys message,
    #       wake message
    """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if generation(KEYS[3], KEYS[4], false) ~= ARGV[2] then
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[7], ARGV[9])
  return 0
end
store(KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], now_ms())
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[7], ARGV[8])
return 1
""",
)

SET: Final = _script(
    "set",
    # KEYS: entry, lease, namespace generation, cache generation
    # ARGV: codec, data, ttl_ms, keep_ms, channel, message
    """
local gen = generation(KEYS[3], KEYS[4], true)
store(KEYS[1], gen, ARGV[1], ARGV[2], ARGV[3], ARGV[4], now_ms())
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
""",
)

DELETE: Final = _script(
    "delete",
    # KEYS: entries and their leases; ARGV: channel, message
    """
redis.call('DEL', unpack(KEYS))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
""",
)

CLEAR: Final = _script(
    "clear",
    # KEYS: a generation counter (a cache's: clear; the namespace's: flush)
    # ARGV: channel, message
    """
bump(KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
""",
)

FLUSH: Final = CLEAR  # the same script on the namespace's counter

RELEASE: Final = _script(
    "release",
    # KEYS: lease; ARGV: lease value, channel, wake message
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
""",
)

RENEW: Final = _script(
    "renew",
    # KEYS: leases; ARGV: lease_ms, then each lease's value
    """
local kept = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    kept[i] = 1
  else
    kept[i] = 0
  end
end
return kept
""",
)

RESERVE: Final = _script(
    "reserve",
    # KEYS: limiter state; ARGV: interval_us, pause_us (0: none), take a slot ('1'/'0')
    # Reply: {µs until the slot (0 when none was taken), µs of pause left}
    """
local now = now_us()
local v = redis.call('HMGET', KEYS[1], 'n', 'p')
local nxt = tonumber(v[1]) or 0
local paused = tonumber(v[2]) or 0
local pause = tonumber(ARGV[2])
if pause > 0 and now + pause > paused then paused = now + pause end
local start = now
if ARGV[3] == '1' then
  start = math.max(now, nxt, paused)
  nxt = start + tonumber(ARGV[1])
end
redis.call('HSET', KEYS[1], 'n', string.format('%.0f', nxt), 'p', string.format('%.0f', paused))
redis.call('PEXPIRE', KEYS[1], math.floor((math.max(nxt, paused) - now) / 1000) + 1000)
return {math.floor(start - now), math.floor(math.max(0, paused - now))}
""",
)

ALL_SCRIPTS: Final = (LOOKUP, FILL, SET, DELETE, CLEAR, RELEASE, RENEW, RESERVE)
"""Every script, loaded together the first time a server does not know one."""
