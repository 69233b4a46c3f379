"""Default numbers of the relay, with their units in their names (settings: relay/config.py)."""

MAX_BODY_BYTES = 64 * 1024
# An organization's inbound rate limit lets a burst of this many seconds' worth pass.
INGEST_BURST_SECONDS = 10.0
SPOOL_EXIT_DRAIN_SECONDS = 10.0
# No web process reaching Redis for this long is an outage (each one pulses every quarter
# second); its settling times are settings (relay/config.py).
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

RESPONSE_BODY_KEEP_BYTES = 2048
ATTEMPTS_KEPT = 50

RATE_LIMIT_JITTER_SECONDS = 0.5
NOT_FOUND_GRACE_SECONDS = 600

CLI_REDIS_CONNECTIONS = 2  # a one-off command: the release check, a replay, a console
SCHEDULER_POLL_SECONDS = 0.2

FAILED_ATTEMPTS_KEPT = 1000  # the latest failed attempts, with request and response bodies

KEY_PREFIX = "dmrelay"

# A delivery held by an open breaker goes back on its queue this soon, to wait behind the gate.
BREAKER_HOLD_SECONDS = 1.0

ALERT_NO_WORKER_SECONDS = 120
ALERT_REDIS_MEMORY_SHARE = 0.8
ALERT_EXPIRY_WARNING_SECONDS = 3 * 24 * 3600
ALERT_CHECK_SECONDS = 5.0
ALERT_SEND_TIMEOUT_SECONDS = 5.0
ALERT_SEND_TRIES = 3
ALERT_HISTORY_KEPT = 200
