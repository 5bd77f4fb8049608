"""Every SQL statement orderrelay runs, by name. Each state change writes its event row in the same statement."""

from orderrelay.foundation.constants import DUE_STATUSES, OPEN_STATUSES


def _sql_list(statuses: tuple[str, ...]) -> str:
    """Statuses as a literal SQL list: written out in the statement, as the partial indexes (orders_due,
    orders_open) are, so the planner can match a statement to its index."""
    return "(" + ", ".join(f"'{status}'" for status in statuses) + ")"


DUE = f"status IN {_sql_list(DUE_STATUSES)}"  # the predicate of the index orders_due (migration 0001)
OPEN = _sql_list(OPEN_STATUSES)  # the statuses of the index orders_open (migration 0007)

# A new order and its first event; with %(claim)s (an order due now) it is claimed in the same statement, as CLAIM
# would: status placing with a lease, attempt 1 (marked as sending with %(mark)s, as CLAIM's), the claim's event. One
# round trip for a job that is placed at once.
INSERT_ORDER = """
WITH ins AS (
    INSERT INTO orders (id, provider, status, idempotency_key, message_id, provider_key, request, request_hash,
                        errors, last_error, due_at, expected_at, created_at, notify,
                        attempt_count, claim_token, lease_until, producer, sealed_card)
    VALUES (%(id)s, %(provider)s, CASE WHEN %(claim)s THEN 'placing' ELSE %(status)s END, %(idempotency_key)s,
            %(message_id)s, %(provider_key)s, %(request)s, %(request_hash)s, %(errors)s, %(last_error)s, %(due_at)s,
            %(expected_at)s,
            coalesce(%(received_at)s, clock_timestamp()), %(notify)s,
            CASE WHEN %(claim)s THEN 1 ELSE 0 END, %(claim_token)s,
            CASE WHEN %(claim)s THEN clock_timestamp() + make_interval(secs => %(lease)s) END, %(producer)s,
            jsonb_path_exists(%(request)s, 'strict $.**."$sealed" ? (@.type() == "string")'))
    ON CONFLICT DO NOTHING
    RETURNING id, status, provider, request, provider_key, attempt_count, claim_token, round_base, retry_round,
              notify IS NOT NULL AS notifies
), ev AS (
    INSERT INTO order_events (order_id, from_status, to_status, reason)
    SELECT id, NULL, %(status)s, %(reason)s FROM ins
    UNION ALL
    SELECT id, %(status)s, 'placing', %(claim_reason)s FROM ins WHERE %(claim)s
), att AS (
    INSERT INTO attempts (order_id, number, idempotency_key, sent_at)
    SELECT id, 1, provider_key::text, CASE WHEN %(mark)s THEN clock_timestamp() END FROM ins WHERE %(claim)s
    RETURNING id, sent_at IS NOT NULL AS marked
)
SELECT ins.*, true AS created, %(status)s AS from_status, (SELECT id FROM att) AS attempt_id,
       coalesce((SELECT marked FROM att), false) AS marked, false AS uncertain, NULL::timestamptz AS key_sent_at
FROM ins
"""

FIND_DUPLICATE = """
SELECT id, status, request_hash, idempotency_key, false AS created FROM orders
WHERE id = %(id)s OR message_id = %(message_id)s
   OR (idempotency_key = %(idempotency_key)s AND coalesce(producer, '') = coalesce(%(producer)s, '')
       AND status <> 'rejected')
ORDER BY (idempotency_key = %(idempotency_key)s AND status <> 'rejected') DESC NULLS LAST, (id = %(id)s) DESC
LIMIT 1
"""

# Claim a due order for one placement: status -> placing with a lease, a new attempt row, one event. The claim
# says whether the order is uncertain: an attempt not yet settled may have made it (its outcome was in_doubt). With
# %(mark)s nothing stands between the claim and the create request (no rate's turn, no token to ask for, a
# connection to reuse): the new attempt is marked as sending by this statement, unless a lookup must come first
# (%(lookup)s and the order uncertain); ``marked`` says which. The worker takes the mark back if it must connect.
CLAIM = f"""
WITH old AS (
    SELECT id, status FROM orders
    WHERE id = %(id)s AND {DUE} AND due_at <= clock_timestamp()
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE orders o
    SET status = 'placing', attempt_count = o.attempt_count + 1, claim_token = %(claim_token)s,
        lease_until = clock_timestamp() + make_interval(secs => %(lease)s), updated_at = clock_timestamp()
    FROM old WHERE o.id = old.id
    RETURNING o.id, o.provider, o.request, o.provider_key, o.attempt_count, o.claim_token, o.round_base,
              o.retry_round, o.notify IS NOT NULL AS notifies, o.key_sent_at, o.settled_through,
              old.status AS from_status
), unc AS (
    SELECT EXISTS (SELECT 1 FROM attempts a, upd WHERE a.order_id = upd.id AND a.outcome = 'in_doubt'
                                                   AND a.number > upd.settled_through) AS uncertain
), ev AS (
    INSERT INTO order_events (order_id, from_status, to_status, reason)
    SELECT id, from_status, 'placing', %(reason)s || ' (attempt ' || attempt_count || ')' FROM upd
), att AS (
    INSERT INTO attempts (order_id, number, idempotency_key, sent_at)
    SELECT id, attempt_count, provider_key::text,
           CASE WHEN %(mark)s AND NOT (%(lookup)s AND (SELECT uncertain FROM unc)) THEN clock_timestamp() END
    FROM upd
    RETURNING id, sent_at IS NOT NULL AS marked
)
SELECT upd.*, att.id AS attempt_id, att.marked, unc.uncertain FROM upd, att, unc
"""

# Once a create request's connection is open, before it is written (when the claim did not mark it): its attempt is
# marked as sending, fenced by the claim (still this worker's, its lease not run out, the attempt not finished by a
# recovery). Nothing returned: the worker must not send. A recovery that takes the claim at the same moment waits
# for this row, and reads the mark.
MARK_SENDING = """
UPDATE attempts a SET sent_at = clock_timestamp()
WHERE a.id = %(attempt_id)s AND a.finished_at IS NULL
  AND EXISTS (SELECT 1 FROM orders o WHERE o.id = %(id)s AND o.status = 'placing' AND o.claim_token = %(claim_token)s
                                      AND o.lease_until > clock_timestamp())
RETURNING a.id
"""
# Nothing is being sent for now: the create request was answered and made nothing (a 401) and another follows after a
# fresh token, or the request the claim marked must first wait for a connection to be made.
UNMARK_SENDING = "UPDATE attempts SET sent_at = NULL WHERE id = %(attempt_id)s AND finished_at IS NULL RETURNING id"

# An attempt's outcome under its claim (fenced by the claim's token). The attempt keeps the key its create request
# carried; the order keeps the key its next request carries (a per-answer key may have been renewed) and when the
# current key was first sent; a failed order is settled (it certainly holds nothing at the provider).
FINISH_ATTEMPT = """
WITH att AS (
    UPDATE attempts SET finished_at = clock_timestamp(), http_status = %(http_status)s,
                        latency_ms = %(latency_ms)s, outcome = %(outcome)s, error = %(error)s,
                        idempotency_key = coalesce(%(attempt_key)s, idempotency_key)
    WHERE id = %(attempt_id)s AND finished_at IS NULL
    RETURNING coalesce(sent_at, started_at) AS sent_at
), upd AS (
    UPDATE orders o
    SET status = %(to_status)s,
        provider_key = coalesce(%(next_key)s, o.provider_key),
        key_sent_at = CASE WHEN %(next_key)s::uuid IS NOT NULL THEN NULL
                           WHEN %(key_sent)s THEN coalesce(o.key_sent_at, (SELECT sent_at FROM att))
                           ELSE o.key_sent_at END,
        settled_through = CASE WHEN %(to_status)s = 'failed' THEN o.attempt_count ELSE o.settled_through END,
        provider_ref = coalesce(%(provider_ref)s, o.provider_ref),
        provider_status = coalesce(%(provider_status)s, o.provider_status),
        response = coalesce(%(response)s, o.response),
        request = coalesce(%(request)s, o.request),
        last_error = %(error)s,
        due_at = %(due_at)s, expected_at = %(expected_at)s,
        lease_until = NULL, claim_token = NULL,
        placed_at = CASE WHEN %(to_status)s = 'placed' THEN clock_timestamp() ELSE o.placed_at END,
        updated_at = clock_timestamp()
    WHERE o.id = %(id)s AND o.status = 'placing' AND o.claim_token = %(claim_token)s
    RETURNING o.id
)
INSERT INTO order_events (order_id, from_status, to_status, reason)
SELECT id, 'placing', %(to_status)s, %(reason)s FROM upd
RETURNING order_id
"""

# A guarded transition of one order: only from the listed statuses; returns nothing when it did not apply.
TRANSITION = """
WITH old AS (
    SELECT id, status FROM orders WHERE id = %(id)s AND status = ANY(%(from_statuses)s) FOR UPDATE
), upd AS (
    UPDATE orders o SET status = %(to_status)s, due_at = coalesce(%(due_at)s, o.due_at),
                        expected_at = %(expected_at)s, lease_until = NULL, claim_token = NULL,
                        updated_at = clock_timestamp()
    FROM old WHERE o.id = old.id
    RETURNING o.id, old.status AS from_status
)
INSERT INTO order_events (order_id, from_status, to_status, reason)
SELECT id, from_status, %(to_status)s, %(reason)s FROM upd
RETURNING order_id, from_status
"""

# Work that is due but whose message is not on its way (never sent, or lost with Redis).
SWEEP_DUE = f"""
WITH due AS (
    SELECT id FROM orders
    WHERE {DUE} AND due_at <= clock_timestamp()
      AND (expected_at IS NULL OR expected_at < clock_timestamp() - make_interval(secs => %(grace)s))
    ORDER BY due_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE orders o SET expected_at = clock_timestamp(), updated_at = clock_timestamp()
WHERE o.id = ANY (ARRAY(SELECT id FROM due))  -- by primary key, whatever the planner guesses of the batch's size
RETURNING o.id, o.provider
"""

# Claims whose worker died or froze: the lease ran out while the order was being placed. ``key_sent_at`` is when
# the current key was first sent, supposing the lost call sent it.
EXPIRED_LEASES = """
SELECT o.id, o.provider,
       coalesce(o.key_sent_at, (SELECT min(coalesce(a.sent_at, a.started_at)) FROM attempts a
                                WHERE a.order_id = o.id AND a.finished_at IS NULL)) AS key_sent_at
FROM orders o
WHERE o.status = 'placing' AND o.lease_until < clock_timestamp()
ORDER BY o.lease_until
LIMIT %(limit)s
"""

# Take back an expired claim (checked again under the row's lock: its worker may have renewed it meanwhile). What its
# unfinished attempt did is read here, under the lock, from the attempt's own row: marked as sending (it may have made
# the order: in_doubt, or placed again where %(to_status)s, the provider's policy, says that is safe), or not (the
# worker was lost while it waited, before anything was sent: retryable, and the order is placed again now). An
# attempt a late answer finished first is judged by what it recorded.
RECOVER_LEASE = """
WITH old AS (
    SELECT id FROM orders WHERE id = %(id)s AND status = 'placing' AND lease_until < clock_timestamp() FOR UPDATE
), att AS (
    UPDATE attempts SET finished_at = clock_timestamp(),
                        outcome = CASE WHEN sent_at IS NULL THEN 'retryable' ELSE 'in_doubt' END,
                        error = jsonb_build_object(
                            'kind', CASE WHEN sent_at IS NULL THEN 'retryable' ELSE 'in_doubt' END,
                            'message', CASE WHEN sent_at IS NULL
                                            THEN 'not sent: the worker was lost before its create request went out'
                                            ELSE 'the worker was lost during the call' END)
    WHERE order_id IN (SELECT id FROM old) AND finished_at IS NULL
    RETURNING sent_at
), fate AS (
    SELECT coalesce((SELECT bool_or(sent_at IS NOT NULL) FROM att),
                    (SELECT a.sent_at IS NOT NULL OR a.outcome = 'in_doubt' FROM attempts a, old
                     WHERE a.order_id = old.id ORDER BY a.number DESC LIMIT 1),
                    false) AS sent,
           (SELECT min(sent_at) FROM att) AS first_sent
), upd AS (
    UPDATE orders o SET status = CASE WHEN fate.sent THEN %(to_status)s ELSE 'queued' END,
                        due_at = CASE WHEN fate.sent THEN %(due_at)s ELSE clock_timestamp() END,
                        expected_at = NULL, lease_until = NULL, claim_token = NULL,
                        key_sent_at = coalesce(o.key_sent_at, fate.first_sent), updated_at = clock_timestamp()
    FROM old, fate WHERE o.id = old.id
    RETURNING o.id, o.status, fate.sent
)
INSERT INTO order_events (order_id, from_status, to_status, reason)
SELECT id, 'placing', status,
       CASE WHEN sent THEN %(reason)s
            ELSE 'lease expired before anything was sent (the worker was lost while it waited: a token, a rate turn, '
                 'a seat); placed again' END
FROM upd
RETURNING order_id, to_status
"""

# A worker renews the leases of the claims it holds while their calls are in flight; returns the ones still held.
RENEW_LEASES = """
UPDATE orders o SET lease_until = clock_timestamp() + make_interval(secs => %(lease)s)
FROM unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS c(id, token)
WHERE o.id = c.id AND o.claim_token = c.token AND o.status = 'placing'
RETURNING o.id
"""

# What a worker learnt after its claim was taken: the attempt gets its real outcome and the order an event. An
# answer that proves placement (a reference) makes the order placed, whatever the sweep decided meanwhile; a
# worker that never sent gives back an in-doubt order no other attempt leaves uncertain.
LATE_ANSWER = """
WITH att AS (
    UPDATE attempts SET finished_at = coalesce(finished_at, clock_timestamp()), http_status = %(http_status)s,
                        latency_ms = %(latency_ms)s, outcome = %(outcome)s, error = %(error)s,
                        idempotency_key = coalesce(%(attempt_key)s, idempotency_key),
                        sent_at = CASE WHEN %(never_sent)s THEN NULL ELSE sent_at END  -- what recovery will read
    WHERE id = %(attempt_id)s
), cur AS (
    SELECT id, status, provider, provider_ref, notify IS NOT NULL AS notifies FROM orders WHERE id = %(id)s FOR UPDATE
), placed AS (
    UPDATE orders o SET status = 'placed', provider_ref = %(provider_ref)s, provider_status = %(provider_status)s,
                        response = %(response)s, request = coalesce(%(request)s, o.request), last_error = NULL,
                        due_at = NULL, expected_at = NULL, lease_until = NULL, claim_token = NULL,
                        placed_at = clock_timestamp(), updated_at = clock_timestamp()
    FROM cur
    WHERE o.id = cur.id AND %(provider_ref)s::text IS NOT NULL
      AND cur.status IN ('waiting', 'queued', 'placing', 'retrying', 'failed', 'in_doubt', 'canceled')
    RETURNING o.id, cur.status AS from_status
), requeued AS (
    UPDATE orders o SET status = 'queued', due_at = clock_timestamp(), expected_at = NULL,
                        updated_at = clock_timestamp()
    FROM cur
    WHERE o.id = cur.id AND %(never_sent)s AND cur.status = 'in_doubt'
      AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.order_id = o.id AND a.outcome = 'in_doubt'
                                               AND a.number > o.settled_through AND a.id <> %(attempt_id)s)
    RETURNING o.id
), ev AS (
    INSERT INTO order_events (order_id, from_status, to_status, reason)
    SELECT id, from_status, 'placed', %(reason)s FROM placed
    UNION ALL
    SELECT id, 'in_doubt', 'queued', %(reason)s || '; nothing was sent, so it is placed again' FROM requeued
    UNION ALL
    SELECT id, status, status, %(reason)s FROM cur
    WHERE NOT EXISTS (SELECT 1 FROM placed) AND NOT EXISTS (SELECT 1 FROM requeued)
)
SELECT cur.status AS status_before, cur.provider_ref AS ref_before, cur.provider, cur.notifies,
       (SELECT from_status FROM placed) AS placed_from, EXISTS (SELECT 1 FROM requeued) AS requeued
FROM cur
"""

# Which of these message ids are orders (jobs taken in) already.
RECORDED_MESSAGES = "SELECT message_id FROM orders WHERE message_id = ANY(%(ids)s)"

# References of a provider that other orders of ours already hold: a lookup never adopts them.
REF_OWNERS = """
SELECT provider_ref FROM orders WHERE provider = %(provider)s AND provider_ref = ANY(%(refs)s) AND id <> %(id)s
"""

# Placed Adobe orders whose status may still change (1002, or a status Adobe does not document), least recently
# read first, taken for this run: each is moved to the back as it is taken, and rows another run holds are
# skipped, so overlapping runs read different orders. The partial index orders_follow_ups holds only these.
FOLLOW_UPS = """
WITH picked AS (
    SELECT id FROM orders
    WHERE status = 'placed' AND provider = 'adobe_vip' AND provider_status IS DISTINCT FROM '1000'
    ORDER BY updated_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE orders o SET updated_at = clock_timestamp() FROM picked WHERE o.id = picked.id
RETURNING o.id, o.provider, o.request, o.provider_ref, o.provider_status, o.placed_at, o.last_error
"""
# The follow-up's troubles by kind (follow_up: the last read failed or could not be read; follow_up_overdue).
FOLLOW_UP_TROUBLES = """
SELECT last_error->>'kind' AS kind, count(*) AS n FROM orders
WHERE status = 'placed' AND provider = 'adobe_vip' AND provider_status IS DISTINCT FROM '1000'
  AND last_error->>'kind' IN ('follow_up', 'follow_up_overdue')
GROUP BY 1
"""

# A change the follow-up read, recorded only if the order still has the status that run read (compare and set:
# of two overlapping runs, one records the change and notifies).
RECORD_PROVIDER_STATUS = """
WITH upd AS (
    UPDATE orders SET provider_status = %(provider_status)s, response = %(response)s, status = %(to_status)s,
                      last_error = %(error)s, updated_at = clock_timestamp()
    WHERE id = %(id)s AND status = 'placed' AND provider_status IS NOT DISTINCT FROM %(from_status)s
    RETURNING id
)
INSERT INTO order_events (order_id, from_status, to_status, reason)
SELECT id, 'placed', %(to_status)s, %(reason)s FROM upd
RETURNING order_id
"""

# What a follow-up could not learn (the answer unreadable, the call failed, the deadline passed): the order's own
# problem, kept as its last error (shown by `show` and `status`), with an event when it is new.
FOLLOW_UP_TROUBLE = """
WITH upd AS (
    UPDATE orders SET last_error = %(error)s
    WHERE id = %(id)s AND status = 'placed' AND last_error IS DISTINCT FROM %(error)s
    RETURNING id
)
INSERT INTO order_events (order_id, from_status, to_status, reason)
SELECT id, 'placed', 'placed', %(reason)s FROM upd
"""

GET_ORDER = "SELECT * FROM orders WHERE id = %(id)s"
# The orders whose id starts with a prefix: a range of the primary key, two at most (one is an answer, two ambiguous).
ORDER_IDS_BETWEEN = "SELECT id FROM orders WHERE id BETWEEN %(low)s AND %(high)s ORDER BY id LIMIT 2"
GET_ORDER_BY_KEY = """
SELECT * FROM orders WHERE idempotency_key = %(key)s AND (%(all)s OR producer = %(producer)s)
ORDER BY (status = 'rejected'), created_at DESC LIMIT 1
"""
ORDER_EVENTS = "SELECT at, from_status, to_status, reason FROM order_events WHERE order_id = %(id)s ORDER BY id"
ORDER_ATTEMPTS = """
SELECT number, idempotency_key, started_at, finished_at, http_status, latency_ms, outcome, error
FROM attempts WHERE order_id = %(id)s ORDER BY number
"""
LIST_ORDERS = """
SELECT id, provider, status, idempotency_key, provider_ref, provider_status, attempt_count, due_at,
       created_at, updated_at, last_error, errors, producer
FROM orders
WHERE (%(status)s::text IS NULL OR status = %(status)s) AND (%(provider)s::text IS NULL OR provider = %(provider)s)
  AND (%(all)s OR producer = %(producer)s)
ORDER BY created_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s
"""

# Give a claim back without a call (the provider's shared limits held it back mid-attempt: a pause, a turn too far
# away): fenced by the claim, the order is due again later and its unsent attempt goes (it is no attempt). A worker
# that lost its claim changes nothing, so no attempt another worker or a recovery finished (and counted) can vanish.
DEFER = """
WITH upd AS (
    UPDATE orders SET status = %(to_status)s, attempt_count = attempt_count - 1, claim_token = NULL,
                      lease_until = NULL, due_at = clock_timestamp() + make_interval(secs => %(seconds)s),
                      expected_at = CASE WHEN %(expected)s THEN clock_timestamp() + make_interval(secs => %(seconds)s)
                                    END,
                      updated_at = clock_timestamp()
    WHERE id = %(id)s AND status = 'placing' AND claim_token = %(claim_token)s
      AND EXISTS (SELECT 1 FROM attempts WHERE id = %(attempt_id)s AND finished_at IS NULL AND sent_at IS NULL)
    RETURNING id
), att AS (
    DELETE FROM attempts WHERE id = %(attempt_id)s AND EXISTS (SELECT 1 FROM upd)
)
INSERT INTO order_events (order_id, from_status, to_status, reason)
SELECT id, 'placing', %(to_status)s, %(reason)s FROM upd
RETURNING order_id
"""

# Before a claim: the provider's limits hold a due order back (paused, its ceiling full, its turn booked later), so it
# is due again %(seconds)s from now (on Postgres's clock, as everything that reads due_at), with an event; nothing is
# claimed and no attempt is made. An order not due or already taken (a stray message) is left as it is.
POSTPONE = f"""
WITH upd AS (
    UPDATE orders SET due_at = clock_timestamp() + make_interval(secs => %(seconds)s),
                      expected_at = CASE WHEN %(expected)s THEN clock_timestamp() + make_interval(secs => %(seconds)s)
                                    END,
                      updated_at = clock_timestamp()
    WHERE id = %(id)s AND {DUE} AND due_at <= clock_timestamp()
    RETURNING id, status
)
INSERT INTO order_events (order_id, from_status, to_status, reason)
SELECT id, status, status, %(reason)s FROM upd
RETURNING order_id, to_status
"""

# Orders waiting for a seat of their provider's ceiling that may call now: due at once (each gets a message).
WAKE = f"""
UPDATE orders SET due_at = clock_timestamp(), expected_at = clock_timestamp()
WHERE id = ANY(%(ids)s) AND {DUE}
RETURNING id
"""

PROVIDER_OF = "SELECT provider FROM orders WHERE id = %(id)s"

# Back to queued for a new round of attempts (an operator's retry, or a scheduled retry round). ``settle``: an
# operator checked that the provider holds nothing, so no earlier attempt leaves it uncertain and a new key is safe.
REQUEUE = """
WITH old AS (
    SELECT id, status FROM orders WHERE id = %(id)s AND status = ANY(%(from_statuses)s) FOR UPDATE
), upd AS (
    UPDATE orders o SET status = 'queued', due_at = clock_timestamp(), expected_at = %(expected_at)s,
                        round_base = o.attempt_count, retry_round = o.retry_round + %(round_step)s,
                        settled_through = CASE WHEN %(settle)s THEN o.attempt_count ELSE o.settled_through END,
                        provider_key = CASE WHEN %(settle)s THEN gen_random_uuid() ELSE o.provider_key END,
                        key_sent_at = CASE WHEN %(settle)s THEN NULL ELSE o.key_sent_at END,
                        updated_at = clock_timestamp()
    FROM old WHERE o.id = old.id
    RETURNING o.id, o.provider, old.status AS from_status
), ev AS (
    INSERT INTO order_events (order_id, from_status, to_status, reason)
    SELECT id, from_status, 'queued', %(reason)s FROM upd
)
SELECT id, provider, from_status FROM upd
"""

# An operator settles an in-doubt order (failed: the provider holds nothing, so every attempt is settled). It is
# final: the in-doubt error goes (placed) or becomes the operator's (failed), which no retry round selects.
RESOLVE = """
WITH upd AS (
    UPDATE orders SET status = %(to_status)s, provider_ref = coalesce(%(provider_ref)s, provider_ref),
                      last_error = CASE WHEN %(to_status)s = 'placed' THEN NULL
                                        ELSE jsonb_build_object('kind', 'resolved', 'code', 'resolved_by_operator',
                                                                'message', %(reason)s::text) END,
                      settled_through = CASE WHEN %(to_status)s = 'failed' THEN attempt_count ELSE settled_through END,
                      placed_at = CASE WHEN %(to_status)s = 'placed' THEN clock_timestamp() ELSE placed_at END,
                      updated_at = clock_timestamp()
    WHERE id = %(id)s AND status = 'in_doubt'
    RETURNING id
)
INSERT INTO order_events (order_id, from_status, to_status, reason)
SELECT id, 'in_doubt', %(to_status)s, %(reason)s FROM upd
RETURNING order_id
"""

# The next scheduled round, chosen and claimed in one statement: failed orders whose last error was retryable and
# which no unsettled attempt leaves uncertain (nothing was made), rounds left. Rows another run holds are skipped,
# and a row another run changed meanwhile is checked again on its new version, so two beats running at once can
# neither requeue an order twice nor take it past its last round. An order an operator resolved is never taken:
# its last error is then of kind 'resolved'.
REQUEUE_ROUNDS = """
WITH due AS (
    SELECT o.id FROM orders o
    WHERE o.status = 'failed' AND o.last_error->>'kind' = 'retryable' AND o.retry_round < %(rounds)s
      AND o.updated_at < clock_timestamp() - make_interval(secs => %(interval)s)
      AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.order_id = o.id AND a.outcome = 'in_doubt'
                                                 AND a.number > o.settled_through)
    ORDER BY o.updated_at
    LIMIT %(limit)s
    FOR UPDATE OF o SKIP LOCKED
), upd AS (
    UPDATE orders o SET status = 'queued', due_at = clock_timestamp(), expected_at = NULL,
                        round_base = o.attempt_count, retry_round = o.retry_round + 1, updated_at = clock_timestamp()
    FROM due WHERE o.id = due.id
    RETURNING o.id, o.provider, o.retry_round
), ev AS (
    INSERT INTO order_events (order_id, from_status, to_status, reason)
    SELECT id, 'failed', 'queued', 'scheduled retry round ' || retry_round FROM upd
)
SELECT id, provider FROM upd
"""

RECORD_CIRCUIT = """
INSERT INTO provider_circuits (provider, worker, state, failures, open_until, reason)
VALUES (%(provider)s, %(worker)s, %(state)s, %(failures)s, %(open_until)s, %(reason)s)
ON CONFLICT (provider, worker) DO UPDATE
SET state = excluded.state, failures = excluded.failures, open_until = excluded.open_until,
    reason = excluded.reason, updated_at = clock_timestamp()
"""

CIRCUITS = "SELECT * FROM provider_circuits ORDER BY provider, worker"

# The maintained totals (migration 0007): the deltas written since the last fold are folded into the totals by one
# reader at a time (the others read totals + deltas, which is the same sum); the cost follows the rate of change,
# never the size of the tables.
FOLD_ORDER_TOTALS = """
WITH folder AS (
    SELECT pg_try_advisory_xact_lock(hashtext('orderrelay:fold-order-totals')) AS alone
), moved AS (
    DELETE FROM order_total_deltas WHERE (SELECT alone FROM folder) RETURNING provider, status, n
)
INSERT INTO order_totals AS t (provider, status, n)
SELECT provider, status, sum(n) FROM moved GROUP BY provider, status
ON CONFLICT (provider, status) DO UPDATE SET n = t.n + excluded.n
"""
ORDER_TOTALS = """
SELECT provider, status, sum(n)::bigint AS n FROM (
    SELECT provider, status, n FROM order_totals UNION ALL SELECT provider, status, n FROM order_total_deltas
) AS x GROUP BY provider, status HAVING sum(n) <> 0
"""
FOLD_ATTEMPT_TOTALS = """
WITH folder AS (
    SELECT pg_try_advisory_xact_lock(hashtext('orderrelay:fold-attempt-totals')) AS alone
), moved AS (
    DELETE FROM attempt_total_deltas WHERE (SELECT alone FROM folder) RETURNING provider, outcome, le, n, total_ms
)
INSERT INTO attempt_totals AS t (provider, outcome, le, n, total_ms)
SELECT provider, outcome, le, sum(n), sum(total_ms) FROM moved GROUP BY provider, outcome, le
ON CONFLICT (provider, outcome, le) DO UPDATE SET n = t.n + excluded.n, total_ms = t.total_ms + excluded.total_ms
"""
ATTEMPT_TOTALS = """
SELECT provider, outcome, le, sum(n)::bigint AS n, sum(total_ms) AS total_ms FROM (
    SELECT provider, outcome, le, n, total_ms FROM attempt_totals
    UNION ALL SELECT provider, outcome, le, n, total_ms FROM attempt_total_deltas
) AS x GROUP BY provider, outcome, le HAVING sum(n) <> 0
"""
LATENCY_BOUNDS = "SELECT orderrelay_latency_bounds() AS bounds"
# The oldest change among orders still waiting for something: one probe of the index orders_open per status and
# provider (its first entry), however many orders wait.
OLDEST_OPEN = f"""
SELECT p.provider, s.status, x.oldest
FROM unnest(ARRAY[{OPEN[1:-1]}]) AS s (status)
CROSS JOIN unnest(%(providers)s::text[]) AS p (provider)
CROSS JOIN LATERAL (
    SELECT o.updated_at AS oldest FROM orders o
    WHERE o.status IN {OPEN}  -- orders_open's rows
      AND o.status = s.status AND o.provider = p.provider
    ORDER BY o.updated_at LIMIT 1
) AS x
"""
OLDEST_DUE = "SELECT min(due_at) AS due_at FROM orders WHERE status = 'waiting'"

# Orders holding sealed card data (for key rotation), by id, a batch at a time.
SEALED_ORDERS = """
SELECT id, request FROM orders WHERE sealed_card AND id > %(after)s ORDER BY id LIMIT %(limit)s
"""

# Ended orders whose card data has been kept long enough, by id after the last batch (so a run always ends).
CARD_DATA_DUE_FOR_ERASURE = """
SELECT id, request FROM orders
WHERE sealed_card AND id > %(after)s AND status IN ('placed', 'failed', 'rejected', 'canceled')
  AND updated_at < clock_timestamp() - make_interval(secs => %(retention)s)
ORDER BY id LIMIT %(limit)s
"""
ERASE_CARD_DATA = "UPDATE orders SET request = %(request)s, sealed_card = false WHERE id = %(id)s"

SET_REQUEST = "UPDATE orders SET request = %(request)s WHERE id = %(id)s"
ERASE_REQUEST_PATH = "UPDATE orders SET request = request #- %(path)s::text[] WHERE id = %(id)s"

# The latest of each kind from its own index (orders_failed, orders_in_doubt), then the latest of both.
RECENT_FAILURES = """
SELECT * FROM (
    (SELECT id, provider, status, last_error, updated_at FROM orders WHERE status = 'failed'
     ORDER BY updated_at DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT id, provider, status, last_error, updated_at FROM orders WHERE status = 'in_doubt'
     ORDER BY updated_at DESC LIMIT %(limit)s)
) AS latest ORDER BY updated_at DESC LIMIT %(limit)s
"""

# A notification of the order's current state, for its target (when it has one). Built from the row itself.
ADD_NOTIFICATION = """
INSERT INTO notifications (event_id, order_id, target, body, deadline)
SELECT %(event_id)s, o.id, o.notify,
       jsonb_build_object(
           'version', 1, 'event_id', %(event_id)s::text, 'order_id', o.id, 'idempotency_key', o.idempotency_key,
           'provider', o.provider, 'status', o.status, 'provider_ref', o.provider_ref,
           'provider_status', o.provider_status,
           'error', CASE WHEN o.last_error IS NULL AND o.errors IS NULL THEN NULL
                         ELSE jsonb_build_object('code', o.last_error->>'code',
                                                 'message', coalesce(o.last_error->>'message', 'invalid job'),
                                                 'fields', o.errors) END,
           'created_at', o.created_at, 'updated_at', o.updated_at, 'placed_at', o.placed_at),
       clock_timestamp() + make_interval(secs => %(deadline)s)
FROM orders o WHERE o.id = %(order_id)s AND o.notify IS NOT NULL
RETURNING id
"""

# The next delivery of one order may go only once every earlier one is settled: deliveries arrive in order.
# Due notifications with no delivery message on its way: each is marked as sent (``swept_at``), so a backlog in
# the notifications queue is not fed a second message for the same delivery every sweep.
DUE_NOTIFICATIONS = """
WITH due AS (
    SELECT n.id FROM notifications n
    WHERE n.status = 'pending' AND n.next_attempt_at <= clock_timestamp()
      AND (n.swept_at IS NULL OR n.swept_at < clock_timestamp() - make_interval(secs => %(resend_after)s))
      AND NOT EXISTS (SELECT 1 FROM notifications e WHERE e.order_id = n.order_id AND e.status = 'pending'
                                                      AND e.id < n.id)
    ORDER BY n.next_attempt_at LIMIT %(limit)s
    FOR UPDATE OF n SKIP LOCKED
)
UPDATE notifications n SET swept_at = clock_timestamp() FROM due WHERE n.id = due.id RETURNING n.id
"""

# One try of a delivery at a time: the try holds the delivery for its lease (longer than the longest try) and a
# token of its own; only the holder of the token records the try's result.
CLAIM_NOTIFICATION = """
UPDATE notifications n SET next_attempt_at = clock_timestamp() + make_interval(secs => %(lease)s),
                         claim_token = gen_random_uuid(),
                         swept_at = NULL  -- its message was taken: a later try gets a message of its own
WHERE n.id = %(id)s AND n.status = 'pending' AND n.next_attempt_at <= clock_timestamp()
  AND NOT EXISTS (SELECT 1 FROM notifications e WHERE e.order_id = n.order_id AND e.status = 'pending' AND e.id < n.id)
RETURNING n.id, n.event_id, n.order_id, n.target, n.body, n.attempts, n.deadline, n.claim_token
"""

# A try's result, fenced by its token: a try that outlived its lease (its process was frozen) while another took the
# delivery changes nothing, so `delivered` is final and a late failure cannot make it pending again. Every try is
# kept in the log all the same.
RECORD_NOTIFICATION_ATTEMPT = """
WITH upd AS (
    UPDATE notifications SET attempts = attempts + 1,
           status = CASE WHEN %(delivered)s THEN 'delivered'
                         WHEN clock_timestamp() + make_interval(secs => %(retry_in)s) > deadline THEN 'expired'
                         ELSE 'pending' END,
           delivered_at = CASE WHEN %(delivered)s THEN clock_timestamp() END,
           next_attempt_at = clock_timestamp() + make_interval(secs => %(retry_in)s),
           claim_token = NULL
    WHERE id = %(id)s AND claim_token = %(claim_token)s AND status = 'pending'
    RETURNING id
), att AS (
    INSERT INTO notification_attempts (notification_id, http_status, latency_ms, error)
    SELECT %(id)s, %(http_status)s::integer, %(latency_ms)s::double precision,
           CASE WHEN EXISTS (SELECT 1 FROM upd) THEN %(error)s::text
                ELSE concat_ws('; ', %(error)s::text, 'a try that outlived its lease: its result not counted') END
)
SELECT EXISTS (SELECT 1 FROM upd) AS recorded
"""

ORDER_NOTIFICATIONS = """
SELECT n.id, n.event_id, n.target, n.body->>'status' AS order_status, n.status, n.attempts, n.created_at,
       n.delivered_at, n.next_attempt_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object('at', a.at, 'http_status', a.http_status, 'error', a.error)
                                  ORDER BY a.id)
                 FROM notification_attempts a WHERE a.notification_id = n.id), '[]'::jsonb) AS attempt_log
FROM notifications n WHERE n.order_id = %(order_id)s ORDER BY n.id
"""

REDELIVER_LATEST = """
UPDATE notifications SET status = 'pending', next_attempt_at = clock_timestamp(), swept_at = NULL, claim_token = NULL,
       deadline = greatest(deadline, clock_timestamp() + make_interval(secs => %(deadline)s))
WHERE id = (SELECT max(id) FROM notifications WHERE order_id = %(order_id)s)
RETURNING id
"""
