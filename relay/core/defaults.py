"""Default numbers of the relay, with their units in their names."""

DMTRACKER_BASE_URL = "https://app.dmtracker.ai/api/v1"
MAX_BODY_BYTES = 64 * 1024
DEDUP_WINDOW_SECONDS = 300
MAX_PENDING_DELIVERIES = 100_000
MAX_PENDING_PER_ORG = 50_000
# Per organization and web process; a burst of ten seconds' worth passes. Generous: it is
# there to stop a runaway ManyChat loop, not a busy broadcast.
INGEST_RATE_PER_ORG_PER_SECOND = 100.0
INGEST_BURST_SECONDS = 10.0
INGEST_REDIS_DEADLINE_SECONDS = 2.0
SPOOL_DIR = "/tmp/dmrelay-spool"  # noqa: S108 - a dyno's local disk; DMRELAY_SPOOL_DIR moves it
SPOOL_MAX_BYTES = 256 * 1024 * 1024
SPOOL_EXIT_DRAIN_SECONDS = 10.0
# After an outage, what was accepted since it began waits this long (and while spools drain)
# before workers take it; hosts' clocks may differ by CLOCK_SKEW_SECONDS. No web process
# reaching Redis for OUTAGE_GAP_SECONDS is an outage (each one pulses every quarter second).
SETTLE_SECONDS = 10.0
CLOCK_SKEW_SECONDS = 5.0
OUTAGE_GAP_SECONDS = 1.0
IDEMPOTENCY_KEY_MAX_CHARS = 200
MAX_JSON_DEPTH = 32
# Organization tokens, the metrics token and the secret key are at least this long, so the
# check for a secret pasted into a body or header never matches an ordinary word.
MIN_SECRET_CHARS = 16

# Waiting for DmTracker's answer before answering ManyChat, which gives up after about 10 s.
MAX_ANSWER_WAIT_SECONDS = 8.0
# An answer is kept just long enough for the requests waiting on it, and for a repeat
# that comes right after; later repeats read the delivery's record.
ANSWER_TTL_SECONDS = 15

HTTP_CONNECT_TIMEOUT_SECONDS = 3.05
HTTP_READ_TIMEOUT_SECONDS = 10.0
RESPONSE_BODY_KEEP_BYTES = 2048
ATTEMPTS_KEPT = 50

# Retry schedule: full-jitter exponential backoff; 35 attempts span about a day on average.
MAX_ATTEMPTS = 35
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 7200.0
RATE_LIMIT_JITTER_SECONDS = 0.5
# A 429's hint is honoured up to this; throttling gives up this long after the first 429.
MAX_RETRY_AFTER_SECONDS = 3600.0
THROTTLE_BUDGET_SECONDS = 24 * 3600.0
NOT_FOUND_GRACE_SECONDS = 600

WORKER_CONCURRENCY = 32
# Redis connections per process: a mini plan allows 20 for the whole formation.
WEB_REDIS_CONNECTIONS = 4
WORKER_REDIS_CONNECTIONS = 5
CLI_REDIS_CONNECTIONS = 2  # a one-off command: the release check, a replay, a console
# gunicorn's shape of one web instance: WEB_CONCURRENCY processes of DMRELAY_WEB_THREADS threads.
WEB_PROCESSES = 2
WEB_THREADS = 8
# Proxies in front of the web process that each append the address they saw to
# X-Forwarded-For; 0: none, the socket's peer is the client.
TRUSTED_PROXIES = 0
WORKER_HEARTBEAT_TTL_SECONDS = 30
WORKER_SHUTDOWN_GRACE_SECONDS = 20.0
SCHEDULER_POLL_SECONDS = 0.2

DELIVERED_RETENTION_SECONDS = 7 * 24 * 3600
DEAD_LETTER_RETENTION_SECONDS = 30 * 24 * 3600
# Delivered history's memory budget when Redis sets no maxmemory (else a quarter of it).
HISTORY_MAX_MB = 64
# A delivered message keeps a summary; its full record only for this share of deliveries.
FULL_RECORD_SAMPLE_RATE = 0.01
FAILED_ATTEMPTS_KEPT = 1000  # the latest failed attempts, with request and response bodies

KEY_PREFIX = "dmrelay"

# Budgets (docs/budgets.md). A request's headers and body must all arrive within this, from
# the connection's first byte (or its accept); ManyChat sends a request in milliseconds.
READ_DEADLINE_SECONDS = 10.0
# The share of a web process's waiting slots that the organizations waiting divide among them
# (at least one slot each), so one organization's long waits never starve another's answers.
ORG_WAIT_SHARE = 0.5
# Undelivered deliveries may hold this share of maxmemory in bytes, divided equally among the
# organizations, so one organization's large bodies never fill Redis for the others.
PENDING_BYTES_SHARE_OF_MAXMEMORY = 0.5
# Ingest spools instead of storing in Redis once less than this share of maxmemory is free:
# workers need room to register, take, finish and trim, and finishing is what frees memory.
REDIS_HEADROOM = 0.10
# Circuit breaker per organization: this many transient failures in a row within the window
# open it; probes then go every PROBE seconds, doubling up to PROBE_MAX.
BREAKER_FAILURES = 20
BREAKER_WINDOW_SECONDS = 120.0
BREAKER_PROBE_SECONDS = 30.0
BREAKER_PROBE_MAX_SECONDS = 300.0
# A delivery held by an open breaker goes back on its queue this soon, to wait behind the gate.
BREAKER_HOLD_SECONDS = 1.0

# Alerts: dead letters at once after a quiet period, then one digest per period at most.
ALERT_DIGEST_MINUTES = 15.0
ALERT_BACKLOG_MINUTES = 30.0
ALERT_NO_WORKER_SECONDS = 120
ALERT_REDIS_MEMORY_SHARE = 0.8
ALERT_EXPIRY_WARNING_SECONDS = 3 * 24 * 3600
ALERT_CHECK_SECONDS = 5.0
ALERT_SEND_TIMEOUT_SECONDS = 5.0
ALERT_SEND_TRIES = 3
ALERT_HISTORY_KEPT = 200
ALERT_EMAIL_FROM = "dmrelay@localhost"
