"""Diagnosis at scale: `pushpipe diagnose` answers for a pin and for a message, timed, with --devices devices
registered and --deliveries delivery records stored (issue 15's goal: under 2 s with 1,000,000 and 10,000,000).

Loads its own Elasticsearch indices and ClickHouse database (names prefixed `bench_diag`, dropped at the end
unless --keep), through the sinks' own document builders: --devices devices, two per pin, in Elasticsearch and
ClickHouse's device_events (one in ten switched off and on again); --deliveries deliveries of --messages
messages each addressing an equal share of the devices (90% accepted, of which 80% delivered and 10% opened;
5% invalid tokens; 5% suppressed): a lifecycle row each and a dispatch_results row per batch of 1,000 in ClickHouse,
made there from numbers(), and a delivery document in Elasticsearch for each one not accepted.
Then asks --queries pin stories and message stories of random pins and messages and prints each one's p50
and max seconds. Needs the stack up (`pushpipe up`).

    .venv/bin/python -m bench.diagnose --devices 1000000 --deliveries 10000000
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from elasticsearch import helpers

from pushpipe.config import Settings, load
from pushpipe.schemas import results
from pushpipe.sinks import clickhouse, device_docs, elastic
from pushpipe.support import diagnose

APP = "bench-diag"
NOW = int(time.time() * 1000)
BATCH = 1000  # tokens per result, as dispatch sends them
VENDORS = ("hms", "xiaomi", "apns", "fcm", "oppo", "vivo", "honor", "meizu")


def bench_settings(base: Settings) -> Settings:
    prefix = "bench_diag"
    return base.model_copy(update={"es_index": f"{prefix}-messages", "es_deliveries_index": f"{prefix}-deliveries",
                                   "es_devices_index": f"{prefix}-devices", "es_preferences_index": f"{prefix}-preferences",
                                   "clickhouse_database": prefix})


def pin_of(device: int) -> str:
    return f"p{device // 2:08d}"


def token_of(device: int) -> str:
    return f"tok{device:010d}"


def device_actions(settings: Settings, devices: int) -> Iterator[dict[str, Any]]:
    for n in range(devices):
        vendor = VENDORS[n % len(VENDORS)]
        yield from device_docs.device_actions(settings.es_devices_index, {
            "app_id": APP, "token": token_of(n), "kind": "bind", "ts": NOW - 86_400_000, "pin": pin_of(n), "vendor": vendor,
            "platform": "ios" if vendor == "apns" else "android", "environment": "production", "brand": vendor, "model": "m1",
            "os_version": "14", "app_version": "5.2", "locale": "en", "timezone": "Asia/Shanghai", "tags": [], "fallback_token": None})


def outcome_of(n: int) -> str:
    return "invalid_token" if n % 20 == 0 else "suppressed" if n % 20 == 1 else "accepted"


def code_of(outcome: str) -> str:
    return "0" if outcome == "accepted" else outcome


def delivery_actions(settings: Settings, devices: int, deliveries: int, messages: int) -> Iterator[dict[str, Any]]:
    """Each message's deliveries, built by the analytics job's own builder from results of BATCH tokens; then the
    message's document (the receipts' states are lifecycle rows in ClickHouse: load_clickhouse)."""
    per_message = deliveries // messages
    for m in range(messages):
        requested = NOW - (messages - m) * 60_000
        times = {"requested_at": requested, "taken_at": requested + 50, "due_at": requested, "batched_at": requested + 200,
                 "sent_at": requested + 400, "completed_at": requested + 900}
        for first in range(0, per_message, BATCH):
            numbers = range(first, min(first + BATCH, per_message))
            devices_of = [(m * per_message + i) % devices for i in numbers]
            outcomes = [results.token_outcome(token_of(device), pin_of(device), outcome, code_of(outcome), "", "", "", True)
                        for device, outcome in zip(devices_of, map(outcome_of, numbers), strict=True)]
            result = {"app_id": APP, "msg_id": f"m{m:05d}", "vendor": VENDORS[m % len(VENDORS)], "batch_id": f"b{m}-{first}",
                      "attempt": 0, "campaign": None, "outcomes": outcomes, "accepted": [], **times}
            yield from elastic.delivery_actions(settings.es_deliveries_index, result)
        yield elastic.message_action(settings.es_index, {"app_id": APP, "msg_id": f"m{m:05d}", "requested_at": requested},
                                     {"counts": {"accepted": per_message * 18 // 20}, "vendors": list(VENDORS),
                                      "last_completed_at": times["completed_at"]})


def load_elasticsearch(settings: Settings, name: str, actions: Iterator[dict[str, Any]], total: int) -> None:
    es = elastic.connect(settings)
    # a bulk load: no refreshes, the translog synced in the background (the bench's own indices only)
    es.indices.put_settings(index=f"{settings.es_devices_index},{settings.es_deliveries_index}",
                            settings={"refresh_interval": "-1", "translog.durability": "async"})
    started, done = time.monotonic(), 0
    for _ in helpers.parallel_bulk(es, actions, thread_count=2, chunk_size=5000, raise_on_error=True, filter_path=elastic.BULK_REPLY):
        done += 1
        if done % 100_000 == 0:
            print(f"\r[bench] {name}: {done:,} of ~{total:,} ({done / (time.monotonic() - started):,.0f}/s)", end="", file=sys.stderr)
    print(f"\r[bench] {name}: {done:,} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    es.close()


def load_clickhouse(settings: Settings, devices: int, deliveries: int, messages: int) -> None:
    """device_events (binds, and a switch off then on for one device in ten) and lifecycle rows, made in ClickHouse:
    each delivery's outcome, and of the accepted ones 80% delivered 3 s later, of which one in eight opened 30 s later."""
    ch = clickhouse.connect(settings)  # creates the bench database's tables
    db, per_message = settings.clickhouse_database, deliveries // messages
    started = time.monotonic()
    ch.command(f"""INSERT INTO {db}.device_events (ts, app_id, token, kind, reason, pin, vendor)
        SELECT fromUnixTimestamp64Milli(toInt64({NOW} - 86400000 + (number % 3) * 1000)), '{APP}',
               concat('tok', leftPad(toString(intDiv(number, 3)), 10, '0')),
               ['bind', 'switch_off', 'switch_on'][number % 3 + 1], '', concat('p', leftPad(toString(intDiv(number, 6)), 8, '0')),
               'hms'
        FROM numbers({devices * 3}) WHERE number % 3 = 0 OR intDiv(number, 3) % 10 = 0""")
    batches = -(-per_message // BATCH)  # per message
    ch.command(f"""INSERT INTO {db}.dispatch_results (minute, app_id, vendor, msg_id, batch_id, attempt, requested, accepted,
                                                       completed_at, requested_at, taken_at, due_at, batched_at, sent_at)
        SELECT toDateTime(intDiv(requested + 900, 60000) * 60), '{APP}', 'hms', concat('m', leftPad(toString(m), 5, '0')),
               concat('b', toString(m), '-', toString(first)), 0, n, intDiv(n * 18, 20), fromUnixTimestamp64Milli(toInt64(requested + 900)),
               requested, requested + 50, requested, requested + 200, requested + 400
        FROM (SELECT intDiv(number, {batches}) AS m, (number % {batches}) * {BATCH} AS first, least({BATCH}, {per_message} - first) AS n,
                     toInt64({NOW} - ({messages} - m) * 60000) AS requested
              FROM numbers({messages * batches}))""")
    ch.command(f"""INSERT INTO {db}.lifecycle_events (ts, app_id, msg_id, token, pin, state, code, n, latency_ms, vendor, category, source,
                                                       batch_id)
        SELECT fromUnixTimestamp64Milli(toInt64({NOW} - ({messages} - intDiv(number, {per_message})) * 60000 + 900)), '{APP}',
               concat('m', leftPad(toString(intDiv(number, {per_message})), 5, '0')),
               concat('tok', leftPad(toString(number % {devices}), 10, '0')),
               concat('p', leftPad(toString(intDiv(number % {devices}, 2)), 8, '0')),
               multiIf(number % 20 = 0, 'invalid_token', number % 20 = 1, 'suppressed', 'accepted'), '', 1, 900, 'hms',
               if(number % 2 = 0, 'marketing', 'transactional'), 'dispatch',
               concat('b', toString(intDiv(number, {per_message})), '-', toString(intDiv(number % {per_message}, {BATCH}) * {BATCH}))
        FROM numbers({deliveries})""")
    ch.command(f"""INSERT INTO {db}.lifecycle_events (ts, app_id, msg_id, token, pin, state, code, n, latency_ms, vendor, category, source)
        SELECT fromUnixTimestamp64Milli(toInt64({NOW} - ({messages} - intDiv(number, {per_message})) * 60000
                                                + if(state = 'delivered', 3000, 30000))), '{APP}',
               concat('m', leftPad(toString(intDiv(number, {per_message})), 5, '0')),
               concat('tok', leftPad(toString(number % {devices}), 10, '0')),
               concat('p', leftPad(toString(intDiv(number % {devices}, 2)), 8, '0')),
               arrayJoin(if(number % 10 = 0, ['delivered', 'opened'], ['delivered'])) AS state, '', 1, 2100, 'hms',
               if(number % 2 = 0, 'marketing', 'transactional'), 'sdk'
        FROM numbers({deliveries}) WHERE number % 20 > 1 AND number % 10 < 8""")
    print(f"[bench] ClickHouse: device events, {messages * batches:,} batches and {deliveries:,} lifecycle rows in "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    ch.close()


def timed(ask: Callable[[], Any], times: int) -> list[float]:
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        ask()
        seconds.append(time.perf_counter() - started)
    return seconds


def report(name: str, seconds: list[float]) -> None:
    print(f"{name:<16} p50 {statistics.median(seconds):.3f} s   max {max(seconds):.3f} s   ({len(seconds)} asked; goal < 2 s)")


def drop(settings: Settings) -> None:
    es = elastic.connect(settings)
    for index in (settings.es_index, settings.es_deliveries_index, settings.es_devices_index, settings.es_preferences_index):
        es.options(ignore_status=404).indices.delete(index=index)
    es.close()
    ch = clickhouse.connect(settings, create=False)
    ch.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
    ch.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--deliveries", type=int, default=10_000_000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="Keep the loaded indices and database (a second run with --skip-load reuses them).")
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    settings = bench_settings(load())
    if not args.skip_load:
        drop(settings)
        es = elastic.connect(settings)
        elastic.ensure_indices(es, settings)
        es.close()
        load_clickhouse(settings, args.devices, args.deliveries, args.messages)
        load_elasticsearch(settings, "devices", device_actions(settings, args.devices), args.devices)
        load_elasticsearch(settings, "deliveries", delivery_actions(settings, args.devices, args.deliveries, args.messages), args.deliveries)
    es = elastic.connect(settings)
    es.indices.refresh(index=",".join((settings.es_devices_index, settings.es_deliveries_index, settings.es_index)))
    stored = es.count(index=settings.es_deliveries_index)["count"]
    devices = es.count(index=settings.es_devices_index)["count"]
    es.close()
    print(f"stored: {devices:,} devices, {stored:,} delivery documents of what was not accepted (Elasticsearch), "
          f"{args.deliveries:,} deliveries' lifecycle rows and their batches (ClickHouse)")
    pick = random.Random(7)
    pins = [pin_of(pick.randrange(args.devices)) for _ in range(args.queries)]
    msgs = [f"m{pick.randrange(args.messages):05d}" for _ in range(args.queries)]
    report("pin story", timed(lambda: diagnose.pin_story(settings, APP, pins.pop()), args.queries))
    report("message story", timed(lambda: diagnose.message_story(settings, APP, msgs.pop()), args.queries))
    if not args.keep:
        drop(settings)


if __name__ == "__main__":
    main()
