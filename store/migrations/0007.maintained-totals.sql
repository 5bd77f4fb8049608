-- Totals for /metrics and `orderrelay status` that cost the same at any table size. Every change of an order's
-- status and every attempt adds a delta row by trigger (an insert: concurrent workers never wait on a shared
-- counter row); a reader folds the deltas into the totals (under an advisory lock, one folder at a time) and
-- adds whatever is left. Any snapshot sees totals + deltas consistent with the rows themselves.
-- depends: 0006.producers

CREATE TABLE order_totals (
    provider text NOT NULL,  -- '' for a rejected job that named no provider we know
    status text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (provider, status)
);
CREATE TABLE order_total_deltas (provider text NOT NULL, status text NOT NULL, n integer NOT NULL);

-- Finished attempts by outcome and latency bucket: ``le`` is the smallest bucket bound (ms) the latency fits
-- under, 'Infinity' above the last, -1 when the attempt recorded no latency.
CREATE TABLE attempt_totals (
    provider text NOT NULL,
    outcome text NOT NULL,
    le double precision NOT NULL,
    n bigint NOT NULL,
    total_ms double precision NOT NULL,
    PRIMARY KEY (provider, outcome, le)
);
CREATE TABLE attempt_total_deltas (
    provider text NOT NULL, outcome text NOT NULL, le double precision NOT NULL, n integer NOT NULL,
    total_ms double precision NOT NULL
);

-- The histogram's bounds, in ms, for readers (api/metrics.py); orderrelay_latency_le holds the same constant.
CREATE FUNCTION orderrelay_latency_bounds() RETURNS double precision[] LANGUAGE sql IMMUTABLE
AS $$ SELECT '{10,25,50,100,250,500,1000,2500,5000,10000,30000}'::double precision[] $$;

CREATE FUNCTION orderrelay_count_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO order_total_deltas VALUES (coalesce(NEW.provider, ''), NEW.status, 1);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO order_total_deltas VALUES (coalesce(OLD.provider, ''), OLD.status, -1);
    ELSE
        INSERT INTO order_total_deltas
        VALUES (coalesce(OLD.provider, ''), OLD.status, -1), (coalesce(NEW.provider, ''), NEW.status, 1);
    END IF;
    RETURN NULL;
END
$$;

-- The bucket a latency falls in: the smallest bound it fits under, 'Infinity' above the last, -1 for none.
CREATE FUNCTION orderrelay_latency_le(ms double precision) RETURNS double precision LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    bounds CONSTANT double precision[] := '{10,25,50,100,250,500,1000,2500,5000,10000,30000}';
BEGIN
    IF ms IS NULL THEN
        RETURN -1;
    END IF;
    FOR i IN 1 .. array_length(bounds, 1) LOOP
        IF ms <= bounds[i] THEN
            RETURN bounds[i];
        END IF;
    END LOOP;
    RETURN 'Infinity';
END
$$;

-- An attempt counts once its outcome is known (a late answer may change it: the old one is taken back).
CREATE FUNCTION orderrelay_count_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p text;
BEGIN
    SELECT coalesce(provider, '') INTO p FROM orders WHERE id = NEW.order_id;
    IF OLD.outcome IS NOT NULL THEN
        INSERT INTO attempt_total_deltas
        VALUES (coalesce(p, ''), OLD.outcome, orderrelay_latency_le(OLD.latency_ms), -1, -coalesce(OLD.latency_ms, 0));
    END IF;
    IF NEW.outcome IS NOT NULL THEN
        INSERT INTO attempt_total_deltas
        VALUES (coalesce(p, ''), NEW.outcome, orderrelay_latency_le(NEW.latency_ms), 1, coalesce(NEW.latency_ms, 0));
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION orderrelay_totals_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'orders' THEN
        DELETE FROM order_totals;
        DELETE FROM order_total_deltas;
    END IF;
    DELETE FROM attempt_totals;  -- truncating orders truncates its attempts too
    DELETE FROM attempt_total_deltas;
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_count AFTER INSERT OR DELETE ON orders FOR EACH ROW EXECUTE FUNCTION orderrelay_count_order();
CREATE TRIGGER orders_count_change AFTER UPDATE OF status, provider ON orders FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.provider IS DISTINCT FROM NEW.provider)
    EXECUTE FUNCTION orderrelay_count_order();
CREATE TRIGGER attempts_count AFTER UPDATE OF outcome, latency_ms ON attempts FOR EACH ROW
    WHEN (OLD.outcome IS DISTINCT FROM NEW.outcome OR OLD.latency_ms IS DISTINCT FROM NEW.latency_ms)
    EXECUTE FUNCTION orderrelay_count_attempt();
CREATE TRIGGER orders_truncated AFTER TRUNCATE ON orders FOR EACH STATEMENT
    EXECUTE FUNCTION orderrelay_totals_truncated();
CREATE TRIGGER attempts_truncated AFTER TRUNCATE ON attempts FOR EACH STATEMENT
    EXECUTE FUNCTION orderrelay_totals_truncated();

-- What is there already (the triggers' lock on both tables holds writers off until this commits).
INSERT INTO order_totals SELECT coalesce(provider, ''), status, count(*) FROM orders GROUP BY 1, 2;
INSERT INTO attempt_totals
SELECT coalesce(o.provider, ''), a.outcome, orderrelay_latency_le(a.latency_ms), count(*), coalesce(sum(a.latency_ms), 0)
FROM attempts a JOIN orders o ON o.id = a.order_id WHERE a.outcome IS NOT NULL GROUP BY 1, 2, 3;

-- `status`'s oldest change among the orders that still wait for something (few, whatever the table's size).
CREATE INDEX orders_open ON orders (status, provider, updated_at)
    WHERE status IN ('received', 'waiting', 'queued', 'placing', 'retrying', 'in_doubt');
