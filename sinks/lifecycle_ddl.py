"""ClickHouse tables for analysts: the lifecycle of every push on every device, its rollups and the devices.

- `lifecycle_events`: one row per (app, message, token) state: accepted, rejected, expired, suppressed, ... from
  the dispatch results; delivered, opened, clicked, dismissed, undelivered, switched_off, invalid_target from the
  receipts. Each row carries the message's and the device's dimensions and the time since the state before
  (`latency_ms`: due -> accepted, accepted -> delivered, delivered -> opened), and when pushpipe recorded it
  (`recorded_at`: the vendor's answer, or the receipt gateway's). A dispatch row also keeps the reason dispatch gave and the vendor's
  message id: for an accepted token it is the only per-token record (Elasticsearch keeps the others too,
  sinks/elastic.py). Partitioned by day, kept 30 days.
  ORDER BY (app_id, msg_id, token, state) serves one message's story and the writer's duplicate check; the day
  partitions and a minmax index on `ts` serve time ranges; a bloom filter on `pin` serves one pin's story.
  The analytics job writes each row once (sinks/lifecycle.py checks before it inserts), so it is a plain
  MergeTree: no FINAL, and the materialized views below see each event once, even after a replay.
- `rollup_minute`, `rollup_hour`, `rollup_day`: counts and latency quantile states per bucket by app, vendor,
  brand, model, OS, app version, priority, category, campaign and environment, kept 7 days, 90 days, 2 years.
- `codes_hour`: outcomes and receipts by vendor, brand, state and code (failures by reason, receipt codes).
- `device_events` (raw, 400 days) and `devices` (one row per app and token, its latest state and attributes),
  `token_activity` (last delivery per token), and the views `device_status` and `device_stats`.
"""
from __future__ import annotations

DIMENSIONS = ("app_id", "vendor", "brand", "model", "os_version", "app_version", "priority", "category", "campaign",
              "environment")
# rollup column -> the lifecycle states it counts
COUNTS: dict[str, tuple[str, ...]] = {
    "requested": ("accepted", "invalid_token", "throttled", "unavailable", "rejected", "expired", "suppressed"),
    "sent": ("accepted", "invalid_token", "throttled", "unavailable", "rejected"),
    "accepted": ("accepted",),
    "failed": ("invalid_token", "throttled", "unavailable", "rejected"),
    "suppressed": ("suppressed",),
    "expired": ("expired",),
    "delivered": ("delivered",),
    "undelivered": ("undelivered", "switched_off", "invalid_target"),
    "opened": ("opened",),
    "clicked": ("clicked",),
    "dismissed": ("dismissed",),
}
SENT = ("sent", "failed")  # what reached a vendor: not fan-out's rejections (a payload no vendor takes)
SENT_ONLY = " AND source != 'fanout'"
# latency column -> the state whose latency_ms it takes (the time since the state before)
LATENCIES = {"due_to_accepted_ms": "accepted", "accepted_to_delivered_ms": "delivered", "delivered_to_opened_ms": "opened"}
GRAINS = (("minute", "toStartOfMinute(ts)", "7 DAY"), ("hour", "toStartOfHour(ts)", "90 DAY"),
          ("day", "toStartOfDay(ts)", "730 DAY"))


def lifecycle_table(db: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {db}.lifecycle_events (
        ts DateTime64(3),
        app_id LowCardinality(String),
        msg_id String,
        token String,
        pin String,
        state LowCardinality(String),
        code LowCardinality(String),
        n UInt32,
        latency_ms Int64,
        vendor LowCardinality(String),
        brand LowCardinality(String),
        model LowCardinality(String),
        os_version LowCardinality(String),
        app_version LowCardinality(String),
        environment LowCardinality(String),
        priority LowCardinality(String),
        category LowCardinality(String),
        campaign String,
        source LowCardinality(String),
        recorded_at DateTime64(3),
        batch_id String,
        reason String DEFAULT '',
        vendor_msg_id String DEFAULT '',
        INDEX ts_range ts TYPE minmax GRANULARITY 1,
        INDEX pin_lookup pin TYPE bloom_filter GRANULARITY 4
    ) ENGINE = MergeTree
    PARTITION BY toDate(ts)
    ORDER BY (app_id, msg_id, token, state)
    TTL toDate(ts) + INTERVAL 30 DAY"""


def rollup_table(db: str, grain: str, ttl: str) -> str:
    dims = ",\n        ".join(f"{d} LowCardinality(String)" for d in DIMENSIONS)
    counts = ",\n        ".join(f"{c} SimpleAggregateFunction(sum, UInt64)" for c in COUNTS)
    latencies = ",\n        ".join(f"{c} AggregateFunction(quantileTDigest, Int64)" for c in LATENCIES)
    return f"""CREATE TABLE IF NOT EXISTS {db}.rollup_{grain} (
        bucket DateTime,
        {dims},
        {counts},
        {latencies}
    ) ENGINE = AggregatingMergeTree
    PARTITION BY toYYYYMM(bucket)
    ORDER BY (bucket, {", ".join(DIMENSIONS)})
    TTL bucket + INTERVAL {ttl}"""


def rollup_view(db: str, grain: str, bucket: str) -> str:
    counts = ",\n           ".join(f"sumIf(n, state IN ({_quoted(states)}){SENT_ONLY if c in SENT else ''}) AS {c}"
                                   for c, states in COUNTS.items())
    latencies = ",\n           ".join(f"quantileTDigestStateIf(latency_ms, state = '{s}' AND latency_ms >= 0) AS {c}"
                                      for c, s in LATENCIES.items())
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_{grain}_mv TO {db}.rollup_{grain} AS
    SELECT {bucket} AS bucket, {", ".join(DIMENSIONS)},
           {counts},
           {latencies}
    FROM {db}.lifecycle_events
    GROUP BY bucket, {", ".join(DIMENSIONS)}"""


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def codes(db: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {db}.codes_hour (
            bucket DateTime,
            app_id LowCardinality(String),
            vendor LowCardinality(String),
            brand LowCardinality(String),
            state LowCardinality(String),
            code LowCardinality(String),
            n SimpleAggregateFunction(sum, UInt64)
        ) ENGINE = AggregatingMergeTree
        PARTITION BY toYYYYMM(bucket)
        ORDER BY (bucket, app_id, vendor, brand, state, code)
        TTL bucket + INTERVAL 400 DAY""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.codes_hour_mv TO {db}.codes_hour AS
        SELECT toStartOfHour(ts) AS bucket, app_id, vendor, brand, state, code, sum(n) AS n
        FROM {db}.lifecycle_events GROUP BY bucket, app_id, vendor, brand, state, code""",
    ]


ATTRIBUTES = ("pin", "vendor", "platform", "environment", "brand", "model", "os_version", "app_version")


def devices(db: str) -> list[str]:
    """Device statistics: each device's latest state and attributes, kept up to date by materialized views."""
    attribute_states = ",\n            ".join(f"{a} AggregateFunction(argMax, String, DateTime64(3))" for a in ATTRIBUTES)
    attribute_updates = ",\n               ".join(f"argMaxStateIf({a}, ts, kind IN ('bind', 'report')) AS {a}"
                                                  for a in ATTRIBUTES)
    attributes = ", ".join(f"argMaxMerge({a}) AS {a}" for a in ATTRIBUTES)
    return [
        f"""CREATE TABLE IF NOT EXISTS {db}.device_events (
            ts DateTime64(3),
            app_id LowCardinality(String),
            token String,
            kind LowCardinality(String),
            reason String,
            {", ".join(f"{a} LowCardinality(String)" for a in ATTRIBUTES)}
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(ts)
        ORDER BY (app_id, token, ts)
        TTL toDate(ts) + INTERVAL 400 DAY""",
        f"""CREATE TABLE IF NOT EXISTS {db}.devices (
            app_id LowCardinality(String),
            token String,
            first_seen SimpleAggregateFunction(min, DateTime64(3)),
            last_kind AggregateFunction(argMax, String, DateTime64(3)),
            switch AggregateFunction(argMax, String, DateTime64(3)),
            {attribute_states}
        ) ENGINE = AggregatingMergeTree
        ORDER BY (app_id, token)""",
        # a device event read again (a replay) changes nothing here: its latest and first are the same after it
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.devices_mv TO {db}.devices AS
        SELECT app_id, token, min(ts) AS first_seen,
               argMaxState(kind, ts) AS last_kind,
               argMaxStateIf(kind, ts, kind IN ('switch_on', 'switch_off')) AS switch,
               {attribute_updates}
        FROM {db}.device_events GROUP BY app_id, token""",
        f"""CREATE TABLE IF NOT EXISTS {db}.token_activity (
            app_id LowCardinality(String),
            token String,
            last_accepted SimpleAggregateFunction(max, DateTime64(3)),
            last_delivered SimpleAggregateFunction(max, DateTime64(3))
        ) ENGINE = AggregatingMergeTree
        ORDER BY (app_id, token)""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.token_activity_mv TO {db}.token_activity AS
        SELECT app_id, token, maxIf(ts, state = 'accepted') AS last_accepted,
               maxIf(ts, state IN ('delivered', 'opened', 'clicked')) AS last_delivered
        FROM {db}.lifecycle_events WHERE token != '' GROUP BY app_id, token""",
        # status: cleaned (the vendor said the token is dead), unbound, switched_off, or active
        f"""CREATE VIEW IF NOT EXISTS {db}.device_status AS
        SELECT d.*, a.last_accepted AS last_accepted, a.last_delivered AS last_delivered,
               multiIf(last_kind = 'invalid_token', 'cleaned', last_kind IN ('unbind', 'deregister'), 'unbound',
                       switch = 'switch_off', 'switched_off', 'active') AS status
        FROM (SELECT app_id, token, min(first_seen) AS first_seen, argMaxMerge(last_kind) AS last_kind,
                     argMaxMerge(switch) AS switch, {attributes}
              FROM {db}.devices GROUP BY app_id, token) AS d
        LEFT JOIN (SELECT app_id, token, max(last_accepted) AS last_accepted, max(last_delivered) AS last_delivered
                   FROM {db}.token_activity GROUP BY app_id, token) AS a USING (app_id, token)""",
        # silent: active, and nothing delivered for 7 days (or ever, for a device first seen 7 days ago)
        f"""CREATE VIEW IF NOT EXISTS {db}.device_stats AS
        SELECT app_id, vendor, brand, model, os_version, app_version,
               count() AS total,
               countIf(status = 'active') AS active,
               countIf(toDate(first_seen) = today()) AS new_today,
               countIf(status = 'cleaned') AS cleaned,
               countIf(status = 'unbound') AS unbound,
               countIf(status = 'switched_off') AS switched_off,
               countIf(status = 'active' AND greatest(last_delivered, first_seen) < now64() - INTERVAL 7 DAY) AS silent_7d
        FROM {db}.device_status
        GROUP BY app_id, vendor, brand, model, os_version, app_version""",
    ]


def rates(db: str, grain: str) -> str:
    """Counts and rates per bucket and dimension: what most analysts' questions start from."""
    sums = ", ".join(f"sum({c}) AS {c}" for c in COUNTS)
    return f"""CREATE VIEW IF NOT EXISTS {db}.rates_{grain} AS
    SELECT bucket, {", ".join(DIMENSIONS)}, {sums},
           if(accepted > 0, delivered / accepted, 0) AS delivery_rate,
           if(delivered > 0, opened / delivered, 0) AS open_rate,
           if(accepted > 0, opened / accepted, 0) AS opened_per_accepted,
           if(opened > 0, clicked / opened, 0) AS click_rate
    FROM {db}.rollup_{grain}
    GROUP BY bucket, {", ".join(DIMENSIONS)}"""


def ddl(db: str) -> list[str]:
    rollups = [s for grain, bucket, ttl in GRAINS
               for s in (rollup_table(db, grain, ttl), rollup_view(db, grain, bucket), rates(db, grain))]
    added = [f"ALTER TABLE {db}.lifecycle_events ADD COLUMN IF NOT EXISTS {column}" for column in  # tables made before them
             ("batch_id String AFTER recorded_at", "reason String DEFAULT '' AFTER batch_id",
              "vendor_msg_id String DEFAULT '' AFTER reason")]
    return [lifecycle_table(db), *added, *rollups, *codes(db), *devices(db)]
