"""Redis and RQ behind one adapter: deliveries, queues, contact ordering, dead letters."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from relay.core import defaults
from relay.core.delivery import DEAD, Delivery
from relay.core.errors import ServiceUnavailable

TASK = "workers.tasks.deliver"
LATENCY_SAMPLES = 1000
ALIAS_TTL_SECONDS = 30 * 24 * 3600
JOB_RECORD_GRACE_SECONDS = 60
STATS_RETENTION_SECONDS = 25 * 3600
IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 3600
MAX_ACCEPT_TRIES = 5

# Start a delivery only when it heads every contact chain it is in; otherwise park it.
_TRY_START = """
for _, chain in ipairs(KEYS) do
  if redis.call('LINDEX', chain, 0) ~= ARGV[1] then
    redis.call('SADD', ARGV[2], ARGV[1])
    return 0
  end
end
redis.call('SREM', ARGV[2], ARGV[1])  -- a requeued copy may still be marked parked
return 1
"""

# Leave every chain; wake each parked successor that now heads all of its chains.
_RELEASE_CHAINS = """
local id, parked, prefix, queue_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local function release(chains)
  local woken = {}
  for _, chain in ipairs(chains) do redis.call('LREM', chain, 1, id) end
  for _, chain in ipairs(chains) do
    local head = redis.call('LINDEX', chain, 0)
    if head and redis.call('SISMEMBER', parked, head) == 1 then
      local raw = redis.call('GET', prefix .. ':d:' .. head)
      local ready = raw ~= false
      if ready then
        local next = cjson.decode(raw)
        for _, other in ipairs(next['contact_keys']) do
          if redis.call('LINDEX', other, 0) ~= head then ready = false end
        end
        if ready then
          redis.call('SREM', parked, head)
          redis.call('RPUSH', queue_prefix .. next['org_id'], head)
          table.insert(woken, head)
        end
      end
    end
  end
  return woken
end
"""

# Release a delivery found finished, unless it is no longer: a replay may have just put it
# back at the end of its chains, and that entry must stay.
_RELEASE_IF_FINISHED = (
    _RELEASE_CHAINS
    + """
local raw = redis.call('GET', prefix .. ':d:' .. id)
if raw then
  local state = cjson.decode(raw)['state']
  if state ~= 'delivered' and state ~= 'dead' then return {} end
end
return release(KEYS)
"""
)

# Record a final state and leave the chains in one step: a crash between the two would leave
# a finished delivery heading its chains, and every later one for the contact parked forever.
# The record is written last, so a failure before it leaves the delivery to run again.
_FINISH = (
    _RELEASE_CHAINS
    + """
local record, pending, job, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
redis.call('SREM', pending, id)
redis.call('EXPIRE', job, ARGV[7])
if ARGV[8] ~= '' then redis.call('ZADD', dead, ARGV[8], id) end
local woken = release({unpack(KEYS, 5)})
redis.call('SET', record, ARGV[5], 'EX', ARGV[6])
return woken
"""
)

# Move due scheduled deliveries onto their queue; atomic, so several workers never double.
_MOVE_DUE = """
local moved = 0
for i, scheduled in ipairs(KEYS) do
  local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', ARGV[1], 'LIMIT', 0, 500)
  for _, id in ipairs(due) do
    redis.call('ZREM', scheduled, id)
    redis.call('RPUSH', ARGV[i + 1], id)
    moved = moved + 1
  end
end
return moved
"""

# Put a delivery taken from a processing list back on its queue, unless something else will
# run it: finished, parked behind its predecessor, scheduled, or already queued again.
_REQUEUE_IF_LOST = """
local prefix, queue_prefix, scheduled_prefix, parked = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local function requeue_if_lost(id)
  local raw = redis.call('GET', prefix .. ':d:' .. id)
  if not raw then return 0 end
  local delivery = cjson.decode(raw)
  local queue = queue_prefix .. delivery['org_id']
  if delivery['state'] == 'delivered' or delivery['state'] == 'dead'
    or redis.call('SISMEMBER', parked, id) == 1
    or redis.call('ZSCORE', scheduled_prefix .. delivery['org_id'], id)
    or redis.call('LPOS', queue, id) then  -- O(queue length), but only when reclaiming
    return 0
  end
  redis.call('RPUSH', queue, id)
  return 1
end
"""

# Give a dead worker's in-flight deliveries back to their queues.
_REQUEUE_PROCESSING = (
    _REQUEUE_IF_LOST
    + """
local count = 0
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  count = count + requeue_if_lost(id)
end
redis.call('SREM', KEYS[2], ARGV[5])
return count
"""
)

# Give back one delivery of our own processing list that no thread works on; only if it is
# still listed, so a thread that just finished it does not see it queued again.
_REQUEUE_ONE = (
    _REQUEUE_IF_LOST
    + """
if redis.call('LREM', KEYS[1], 1, ARGV[5]) == 0 then return 0 end
return requeue_if_lost(ARGV[5])
"""
)


@dataclass(frozen=True)
class Accepted:
    """The outcome of accepting a request: its delivery id, and whether it was a repeat."""

    delivery_id: str
    duplicate: bool


def queue_name(org_id: str) -> str:
    """Return the RQ queue name of one organization (one queue each, for fairness)."""
    return f"dmrelay-{org_id}"


# What the Lua scripts add an organization id to, to find its queue.
QUEUE_KEY_PREFIX = Queue.redis_queue_namespace_prefix + queue_name("")


class Store:
    """The only place that talks to Redis and RQ."""

    def __init__(self, connection: redis.Redis, prefix: str = defaults.KEY_PREFIX) -> None:
        self.redis = connection
        self.prefix = prefix
        self._queues: dict[str, Queue] = {}
        self._try_start = connection.register_script(_TRY_START)
        self._release_if_finished = connection.register_script(_RELEASE_IF_FINISHED)
        self._finish = connection.register_script(_FINISH)
        self._move_due = connection.register_script(_MOVE_DUE)
        self._requeue_processing = connection.register_script(_REQUEUE_PROCESSING)
        self._requeue_one = connection.register_script(_REQUEUE_ONE)

    # -- keys ---------------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        """Return a key in the relay's namespace."""
        return ":".join((self.prefix, *parts))

    def delivery_key(self, delivery_id: str) -> str:
        """Return the key that holds one delivery."""
        return self.key("d", delivery_id)

    def queue(self, org_id: str) -> Queue:
        """Return the RQ queue of an organization (JSON serializer, never pickle)."""
        if org_id not in self._queues:
            self._queues[org_id] = Queue(
                queue_name(org_id), connection=self.redis, serializer=JSONSerializer
            )
        return self._queues[org_id]

    # -- web side -----------------------------------------------------------------------------
    def ping(self) -> bool:
        """Return True when Redis answers."""
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def accept(
        self, delivery: Delivery, fingerprint: str, *, window_seconds: int, max_pending: int
    ) -> Accepted:
        """Store and enqueue a delivery once; a repeat within the window returns the first id."""
        dedup_keys = self._dedup_keys(delivery, fingerprint, window_seconds)
        try:
            for _ in range(MAX_ACCEPT_TRIES):
                with self.redis.pipeline() as pipe:
                    try:
                        return self._accept_once(pipe, delivery, dedup_keys, max_pending)
                    except redis.WatchError:
                        continue  # a concurrent identical request won: look again
        except redis.RedisError as error:
            raise ServiceUnavailable("The relay cannot store messages right now.") from error
        raise ServiceUnavailable("The relay is too busy to store this message; try again.")

    def _dedup_keys(
        self, delivery: Delivery, fingerprint: str, window_seconds: int
    ) -> list[tuple[str, int]]:
        """Return (key, ttl) of each key a repeat of this request would find; a 0 window is off."""
        keys = []
        if window_seconds:
            keys.append((self.key("dedup", delivery.org_id, fingerprint), window_seconds))
        if delivery.idempotency_key:
            digest = hashlib.sha256(delivery.idempotency_key.encode()).hexdigest()
            keys.append((self.key("idem", delivery.org_id, digest), IDEMPOTENCY_KEY_TTL_SECONDS))
        return keys

    def _accept_once(
        self,
        pipe: redis.client.Pipeline,
        delivery: Delivery,
        dedup_keys: list[tuple[str, int]],
        max_pending: int,
    ) -> Accepted:
        # Watch only this request's keys: watching the shared pending set would make every
        # concurrent accept conflict (the depth limit is a soft bound anyway). The new
        # delivery's own key is watched too, so there is always one and reads run at once.
        pipe.watch(self.delivery_key(delivery.id), *(key for key, _ in dedup_keys))
        for key, _ in dedup_keys:
            existing = pipe.get(key)
            if existing:
                return Accepted(_text(existing), duplicate=True)
        if pipe.scard(self.key("pending-ids")) >= max_pending:
            raise ServiceUnavailable(
                f"The relay holds {max_pending} undelivered messages, its limit; try again later."
            )
        chains = self._contact_chains(pipe, delivery)
        delivery.contact_keys = chains
        pipe.multi()
        for key, ttl in dedup_keys:
            pipe.set(key, delivery.id, ex=ttl)
        self._store_new(pipe, delivery)
        pipe.execute()
        return Accepted(delivery.id, duplicate=False)

    def _store_new(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the commands that store, index, chain and enqueue a new delivery."""
        pipe.set(self.delivery_key(delivery.id), delivery.to_json())
        # A set, not a counter: a delivery finished twice (at-least-once) leaves it exact.
        pipe.sadd(self.key("pending-ids"), delivery.id)
        pipe.zadd(self.key("index"), {delivery.id: delivery.received_at})
        self._count(pipe, delivery.org_id, delivery.endpoint, "accepted")
        for chain in delivery.contact_keys:
            pipe.rpush(chain, delivery.id)
        self._link_identities(pipe, delivery)
        self._enqueue(pipe, delivery)

    def _enqueue(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Queue the RQ job of a delivery (JSON, no token), inside the caller's transaction."""
        self.queue(delivery.org_id).enqueue_call(
            TASK,
            args=(delivery.id,),
            job_id=delivery.id,
            result_ttl=0,
            ttl=None,
            failure_ttl=defaults.DEAD_LETTER_RETENTION_SECONDS,
            pipeline=pipe,
            description=f"deliver {delivery.endpoint} {delivery.id}",
        )

    # -- contact ordering ---------------------------------------------------------------------
    def _identities(self, delivery: Delivery) -> list[str]:
        payload = delivery.payload
        found = []
        for kind, field in (("u", "username"), ("m", "manychat_id"), ("c", "contact_id")):
            value = payload.get(field)
            if value not in (None, ""):
                found.append(f"{kind}:{value}")
        return found

    def _contact_chains(self, pipe: redis.client.Pipeline, delivery: Delivery) -> list[str]:
        """Return the chains a delivery joins: its identities and those linked to them."""
        identities = self._identities(delivery)
        alias_keys = [self.key("alias", delivery.org_id, name) for name in identities]
        linked = pipe.mget(alias_keys) if identities else []
        names = dict.fromkeys(identities + [_text(alias) for alias in linked if alias])
        return [self.key("chain", delivery.org_id, name) for name in names]

    def _link_identities(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        """Remember that a username and a manychat_id name the same contact."""
        identities = [i for i in self._identities(delivery) if i[0] in "um"]
        if len(identities) == 2:
            username, manychat = identities
            # One key per link, so links of contacts gone quiet expire instead of piling up.
            alias = self.key("alias", delivery.org_id, manychat)
            pipe.set(alias, username, ex=ALIAS_TTL_SECONDS)

    def try_start(self, delivery: Delivery) -> bool:
        """Return True if the delivery may go now; otherwise park it behind its predecessor."""
        if not delivery.contact_keys:
            return True
        return bool(
            self._try_start(keys=delivery.contact_keys, args=[delivery.id, self.key("parked")])
        )

    def release_if_finished(self, delivery: Delivery) -> list[str]:
        """Take a delivery still finished out of its chains; requeue successors it unblocks."""
        if not delivery.contact_keys:
            return []
        keys, args = delivery.contact_keys, self._chain_args(delivery)
        return [_text(item) for item in self._release_if_finished(keys=keys, args=args)]

    def _chain_args(self, delivery: Delivery) -> list[str]:
        return [delivery.id, self.key("parked"), self.prefix, QUEUE_KEY_PREFIX]

    # -- worker side --------------------------------------------------------------------------
    def load(self, delivery_id: str) -> Delivery | None:
        """Return a stored delivery, or None if it is gone."""
        raw = self.redis.get(self.delivery_key(delivery_id))
        return Delivery.from_json(raw) if raw else None

    def save(self, delivery: Delivery) -> None:
        """Store the delivery's current state."""
        self.redis.set(self.delivery_key(delivery.id), delivery.to_json())

    def schedule(self, delivery: Delivery, at: float) -> None:
        """Store the delivery and put it back on its queue at a later time."""
        delivery.next_attempt_at = at
        with self.redis.pipeline() as pipe:
            pipe.set(self.delivery_key(delivery.id), delivery.to_json())
            pipe.zadd(self.scheduled_key(delivery.org_id), {delivery.id: at})
            pipe.execute()

    def scheduled_key(self, org_id: str) -> str:
        """Return the RQ scheduled-job registry key of an organization's queue."""
        return f"rq:scheduled:{queue_name(org_id)}"

    def move_due(self, org_ids: Iterable[str], now: float | None = None) -> int:
        """Move deliveries whose time has come onto their queues; return how many."""
        org_ids = list(org_ids)
        keys = [self.scheduled_key(org_id) for org_id in org_ids]
        queues = [self.queue(org_id).key for org_id in org_ids]
        return int(self._move_due(keys=keys, args=[now or time.time(), *queues]))

    def finish(self, delivery: Delivery, state: str, retention_seconds: int) -> list[str]:
        """Record a final state, keep it for the retention period, unblock the contact."""
        delivery.state = state
        delivery.finished_at = time.time()
        delivery.next_attempt_at = None
        # Let RQ's job record lapse rather than delete it: a stock `rq worker` running the
        # same task still updates it after the task returns.
        keys = [self.delivery_key(delivery.id), self.key("pending-ids"), f"rq:job:{delivery.id}"]
        keys += [self.key("dead"), *delivery.contact_keys]
        args: list[str | int] = [*self._chain_args(delivery), delivery.to_json(), retention_seconds]
        args += [JOB_RECORD_GRACE_SECONDS, repr(delivery.finished_at) if state == DEAD else ""]
        return [_text(item) for item in self._finish(keys=keys, args=args)]

    # -- statistics ---------------------------------------------------------------------------
    def record(
        self, org_id: str, endpoint: str, outcome: str, latency_ms: float | None = None
    ) -> None:
        """Count one outcome in this minute's bucket, and keep the latency sample."""
        with self.redis.pipeline(transaction=False) as pipe:
            self._count(pipe, org_id, endpoint, outcome)
            if latency_ms is not None:
                pipe.lpush(self.key("latency"), latency_ms)
                pipe.ltrim(self.key("latency"), 0, LATENCY_SAMPLES - 1)
            pipe.execute()

    def _count(self, pipe: redis.client.Pipeline, org_id: str, endpoint: str, outcome: str) -> None:
        bucket = self.key("stats", str(int(time.time() // 60)))
        pipe.hincrby(bucket, f"{org_id}|{endpoint}|{outcome}", 1)
        pipe.expire(bucket, STATS_RETENTION_SECONDS)

    def minute_counts(self, minutes: int) -> list[tuple[int, dict[tuple[str, str, str], int]]]:
        """Return the last minutes' buckets, oldest first, keyed by (org, endpoint, outcome)."""
        current = int(time.time() // 60)
        minutes_wanted = range(current - max(1, minutes) + 1, current + 1)
        with self.redis.pipeline(transaction=False) as pipe:
            for minute in minutes_wanted:
                pipe.hgetall(self.key("stats", str(minute)))
            buckets = pipe.execute()
        return [
            (minute, {_stat_key(field): int(count) for field, count in bucket.items()})
            for minute, bucket in zip(minutes_wanted, buckets, strict=True)
        ]

    def counts_since(self, seconds: int) -> tuple[dict[tuple[str, str, str], int], float]:
        """Sum the counters of the last `seconds` by (org, endpoint, outcome), and the span.

        Buckets are whole minutes, so the sum covers that many complete minutes plus the
        current one so far; the span returned is what it really covers, for rates.
        """
        totals: dict[tuple[str, str, str], int] = {}
        for _, bucket in self.minute_counts(seconds // 60 + 1):
            for key, count in bucket.items():
                totals[key] = totals.get(key, 0) + count
        return totals, seconds // 60 * 60 + time.time() % 60

    def latency_samples(self) -> list[float]:
        """Return the most recent DmTracker call latencies, in milliseconds."""
        return [float(v) for v in self.redis.lrange(self.key("latency"), 0, -1)]

    def depths(self, org_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """Return queued and scheduled counts per organization, and the totals in flight."""
        org_ids = list(org_ids)
        with self.redis.pipeline(transaction=False) as pipe:
            for org_id in org_ids:
                pipe.llen(self.queue(org_id).key)
                pipe.zcard(self.scheduled_key(org_id))
            results = pipe.execute()
        return {
            org_id: {"queued": results[2 * i], "scheduled": results[2 * i + 1]}
            for i, org_id in enumerate(org_ids)
        }

    def totals(self) -> dict[str, int]:
        """Return pending, parked, in-flight and dead-letter totals."""
        workers = [_text(w) for w in self.redis.smembers(self.key("workers"))]
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.scard(self.key("pending-ids"))
            pipe.scard(self.key("parked"))
            pipe.zcard(self.key("dead"))
            for worker in workers:
                pipe.llen(self.processing_key(worker))
            pending, parked, dead, *in_flight = pipe.execute()
        return {
            "pending": int(pending),
            "parked": int(parked),
            "dead_letters": int(dead),
            "in_flight": sum(in_flight),
            "workers": len(workers),
        }

    def pending_count(self) -> int:
        """Return how many accepted deliveries are not finished yet."""
        return int(self.redis.scard(self.key("pending-ids")))

    def recent_ids(
        self, limit: int, since: float | None = None, until: float | None = None
    ) -> list[str]:
        """Return up to `limit` ids of deliveries received in [since, until), newest first."""
        newest = f"({until}" if until is not None else "+inf"
        oldest = since if since is not None else "-inf"
        found = self.redis.zrange(
            self.key("index"), newest, oldest, desc=True, byscore=True, offset=0, num=limit
        )
        return [_text(i) for i in found]

    def forget_index_before(self, received_before: float) -> int:
        """Drop index entries of deliveries received before a time; return how many."""
        return int(self.redis.zremrangebyscore(self.key("index"), "-inf", f"({received_before}"))

    def add_to_metrics(self, changes: Mapping[str, float]) -> None:
        """Add to the shared metric values (one hash for every process)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for field, amount in changes.items():
                pipe.hincrbyfloat(self.key("metrics"), field, amount)
            pipe.execute()

    def read_metrics(self) -> dict[str, float]:
        """Return every shared metric value."""
        raw = self.redis.hgetall(self.key("metrics"))
        return {_text(field): float(value) for field, value in raw.items()}

    def hit_window(self, name: str, window_seconds: int) -> tuple[int, int]:
        """Count one hit in a fixed window; return (hits so far, epoch second it resets)."""
        window = int(time.time() // window_seconds)
        key = self.key("hits", name, str(window))
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, window_seconds + 1)
            hits, _ = pipe.execute()
        return int(hits), (window + 1) * window_seconds

    # -- in-flight bookkeeping ----------------------------------------------------------------
    def processing_key(self, worker: str) -> str:
        """Return the list of deliveries a worker has taken and not finished."""
        return self.key("processing", worker)

    def take(self, org_id: str, worker: str) -> str | None:
        """Move the next delivery id of an organization into the worker's processing list."""
        taken = self.redis.lmove(
            self.queue(org_id).key, self.processing_key(worker), "LEFT", "RIGHT"
        )
        return _text(taken) if taken else None

    def done(self, delivery_id: str, worker: str) -> None:
        """Drop a delivery from the worker's processing list."""
        self.redis.lrem(self.processing_key(worker), 1, delivery_id)

    def processing(self, worker: str) -> list[str]:
        """Return the ids in a worker's processing list."""
        return [_text(i) for i in self.redis.lrange(self.processing_key(worker), 0, -1)]

    def requeue_one(self, delivery_id: str, worker: str) -> bool:
        """Move one delivery from a worker's processing list back to its queue if lost."""
        return bool(
            self._requeue_one(
                keys=[self.processing_key(worker)], args=[*self._requeue_args(), delivery_id]
            )
        )

    def _requeue_args(self) -> list[str]:
        return [self.prefix, QUEUE_KEY_PREFIX, self.scheduled_key(""), self.key("parked")]

    def forget_worker(self, worker: str) -> None:
        """Leave the worker registry on a clean exit."""
        with self.redis.pipeline() as pipe:
            pipe.srem(self.key("workers"), worker)
            pipe.delete(self.key("worker", worker), self.processing_key(worker))
            pipe.execute()

    def heartbeat(self, worker: str, ttl_seconds: int) -> None:
        """Tell the others this worker is alive."""
        with self.redis.pipeline() as pipe:
            pipe.sadd(self.key("workers"), worker)
            pipe.set(self.key("worker", worker), int(time.time()), ex=ttl_seconds)
            pipe.execute()

    def requeue_processing(self, worker: str) -> int:
        """Give a worker's in-flight deliveries back to their queues; return how many."""
        return int(
            self._requeue_processing(
                keys=[self.processing_key(worker), self.key("workers")],
                args=[*self._requeue_args(), worker],
            )
        )

    def dead_workers(self) -> list[str]:
        """Return workers registered here whose heartbeat has expired."""
        workers = [_text(w) for w in self.redis.smembers(self.key("workers"))]
        alive = self.redis.mget([self.key("worker", w) for w in workers]) if workers else []
        return [w for w, beat in zip(workers, alive, strict=True) if beat is None]

    # -- dead letters -------------------------------------------------------------------------
    def dead_letter_ids(self) -> list[str]:
        """Return the ids of every dead letter still kept, newest first."""
        return self._newest(self.key("dead"))

    def _newest(self, index: str) -> list[str]:
        """Return ids from an index, newest first, dropping those whose record expired."""
        ids = [_text(i) for i in self.redis.zrange(index, 0, -1, desc=True)]
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.exists(self.delivery_key(delivery_id))
            alive = pipe.execute()
        # Retention is each record's TTL; the index forgets what has expired.
        gone = [i for i, exists in zip(ids, alive, strict=True) if not exists]
        if gone:
            self.redis.zrem(index, *gone)
        return [i for i, exists in zip(ids, alive, strict=True) if exists]

    def iter_deliveries(self, ids: Iterable[str]) -> Iterator[Delivery]:
        """Load many deliveries at once, skipping any that expired."""
        ids = list(ids)
        for start in range(0, len(ids), 500):
            for raw in self.redis.mget([self.delivery_key(i) for i in ids[start : start + 500]]):
                if raw:
                    yield Delivery.from_json(raw)

    def replay(self, delivery_id: str) -> bool:
        """Send a dead letter again with a fresh attempt budget, at the end of its chains."""
        return self._if_still_dead(delivery_id, self._replay)

    def purge(self, delivery_id: str) -> bool:
        """Forget a dead letter."""
        return self._if_still_dead(delivery_id, self._purge)

    def _if_still_dead(
        self, delivery_id: str, action: Callable[[redis.client.Pipeline, Delivery], None]
    ) -> bool:
        """Run a replay or purge only if the delivery is dead and nobody changes it meanwhile."""
        # Two operators replaying (or one purging) the same letter at once must not queue it
        # twice or forget it while it is queued: the loser's transaction fails and stops.
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(self.delivery_key(delivery_id))
                raw = pipe.get(self.delivery_key(delivery_id))
                delivery = Delivery.from_json(raw) if raw else None
                if delivery is None or delivery.state != DEAD:
                    return False
                pipe.multi()  # RQ's enqueue_call calls multi() itself, which needs it first
                action(pipe, delivery)
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def _replay(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        delivery.state, delivery.reason = "queued", None
        delivery.attempts_used, delivery.replays = 0, delivery.replays + 1
        delivery.finished_at = delivery.next_attempt_at = None
        pipe.zrem(self.key("dead"), delivery.id)
        pipe.set(self.delivery_key(delivery.id), delivery.to_json())
        pipe.sadd(self.key("pending-ids"), delivery.id)
        for chain in delivery.contact_keys:
            pipe.rpush(chain, delivery.id)
        self._enqueue(pipe, delivery)

    def _purge(self, pipe: redis.client.Pipeline, delivery: Delivery) -> None:
        pipe.zrem(self.key("dead"), delivery.id)
        pipe.zrem(self.key("index"), delivery.id)
        pipe.delete(self.delivery_key(delivery.id))


def _stat_key(field: bytes) -> tuple[str, str, str]:
    org_id, endpoint, outcome = _text(field).split("|")
    return org_id, endpoint, outcome


def _text(value: bytes | str | object) -> str:
    """Return a Redis reply as text (the client keeps bytes, as RQ requires)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def fingerprint(org_id: str, endpoint: str, body: str) -> str:
    """Return the dedup fingerprint of a normalized request."""
    return hashlib.sha256(f"{org_id}\n{endpoint}\n{body}".encode()).hexdigest()
