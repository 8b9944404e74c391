"""`pushpipe demo`: register simulated devices, send pushes, show what happened."""
from __future__ import annotations

import json
import sys
import time
import uuid

from pushpipe import observe, status_view
from pushpipe.config import Settings, masked_url
from pushpipe.connectors.base import Vendor
from pushpipe.connectors.registry import SPECS
from pushpipe.infra import stack
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.sinks import clickhouse, deliveries, elastic

DEMO_APP = "demo-app"
VENDORS = tuple(v.value for v, s in SPECS.items() if s.sample_token)  # every vendor devices register with


def demo_token(vendor: str, run: str, n: int) -> str:
    """A token shaped like the vendor's (the simulators check the shape)."""
    shape = SPECS[Vendor(vendor)].sample_token
    if shape is None:
        raise KeyError(vendor)
    return shape(f"{run}{n:08x}")


def progress(message: str) -> None:
    print(f"\r[demo] {message}\033[K", end="", file=sys.stderr, flush=True)


# each vendor's devices by brand (FCM: Android phones of other brands), with a model and versions
BRANDS = {"apns": ("apple",), "fcm": ("samsung", "google"), "hms": ("huawei",), "honor": ("honor",),
          "xiaomi": ("xiaomi", "redmi"), "oppo": ("oppo",), "vivo": ("vivo",), "meizu": ("meizu",)}


def register_devices(producer: PushProducer, admin: SimulatorAdmin, run: str, pins: int, per_pin: int) -> list[str]:
    """Devices bound to the demo's users, and known to the simulated population (their app and brand)."""
    tokens, population = [], {}
    for p in range(pins):
        for d in range(per_pin):
            n = p * per_pin + d
            vendor = VENDORS[n % len(VENDORS)]
            brand = BRANDS.get(vendor, ("generic",))[p % len(BRANDS.get(vendor, ("generic",)))]
            token = demo_token(vendor, run, n)
            producer.device_event(device_event(DEMO_APP, f"user-{run}-{p}", token, vendor=vendor, brand=brand,
                                               model=f"{brand}-{p % 3 + 1}", os_version=str(12 + p % 3), app_version="5.2.0"))
            tokens.append(token)
            population[token] = {"app_id": DEMO_APP, "brand": brand}
    producer.flush()
    admin.register_devices(population)
    return tokens


def send_requests(producer: PushProducer, run: str, pins: int, group_size: int) -> int:
    """One request per pin, plus pin-list requests of `group_size` pins; returns expected token sends."""
    for p in range(pins):
        producer.request(push_request(DEMO_APP, [f"user-{run}-{p}"], "Your order shipped", f"Order {p} is on its way",
                                      campaign=f"demo-{run}"))
    for start in range(0, pins, group_size):
        group = [f"user-{run}-{p}" for p in range(start, min(pins, start + group_size))]
        producer.request(push_request(DEMO_APP, group, "Flash sale", "20% off today", category="marketing",
                                      priority="low", campaign=f"demo-{run}"))
    producer.raw(producer.topics.requests, "garbage", b"this is not avro")
    producer.flush()
    return pins * 2


# The simulated devices and apps (simulators/population.py): most pushes arrive, some are opened and clicked.
POPULATION = {"delivery_rate": 0.93, "delivery_delay_ms": 400, "open_rate": 0.3, "click_rate": 0.4, "open_delay_ms": 800,
              "offline_rate": 0.05, "offline_ms": 3000, "switched_off_rate": 0.02,
              "brands": {"redmi": {"delivery_rate": 0.8, "delivery_delay_ms": 900}, "google": {"delivery_rate": 0.97}}}


def run(settings: Settings, pins: int = 1000, per_pin: int = 3) -> None:
    stack.up(settings)
    admin = SimulatorAdmin(settings.simulator_admin_url)
    admin.configure(**POPULATION)
    run_id = uuid.uuid4().hex[:8]
    producer = PushProducer(settings)
    tokens = register_devices(producer, admin, run_id, pins, per_pin)
    print(f"[demo] registered {len(tokens)} devices on {', '.join(VENDORS)} for {pins} users of app {DEMO_APP}",
          file=sys.stderr)
    progress("fan-out loading the devices...")
    observe.wait_fanout_read(settings, timeout_s=120)
    started = time.monotonic()
    expected = send_requests(producer, run_id, pins, 100) * per_pin
    print(f"\n[demo] sent {pins} single-user pushes and {-(-pins // 100)} pin-list pushes (+1 malformed record)", file=sys.stderr)

    def delivered() -> bool:  # accepted by the vendors, or refused (a device with notifications off: Meizu 110005)
        got = observe.simulator_accepted(settings, run_id)["count"]
        progress(f"vendor simulators accepted {got}/{expected} notifications ({time.monotonic() - started:.1f}s)")
        return got >= expected * (1 - POPULATION["switched_off_rate"])

    observe.wait_for(delivered, 300, "the simulator to accept the notifications")
    print(file=sys.stderr)
    show_clickhouse(settings, run_id, expected)
    show_rates(settings, run_id)
    show_elasticsearch(settings, run_id)
    show_diagnosis(settings, f"user-{run_id}-0")
    print_next_steps(settings, f"user-{run_id}-0")


def show_clickhouse(settings: Settings, run_id: str, expected: int) -> None:
    ch = clickhouse.connect(settings)
    db = settings.clickhouse_database
    sql = (f"SELECT vendor, category, uniqExact(msg_id) AS messages, sum(requested) AS requested, sum(sent) AS sent, "
           f"sum(accepted) AS accepted, sum(failed) AS failed FROM {db}.dispatch_results FINAL "
           f"WHERE campaign = 'demo-{run_id}' GROUP BY vendor, category ORDER BY category, vendor")
    rows = observe.wait_for(lambda: _complete(ch.rows(sql), expected), 120, "ClickHouse to show every result")
    print("\nClickHouse (pushpipe.dispatch_results):")
    status_view.console().print(status_view.rows_table(rows))


def rates_sql(db: str, run_id: str) -> str:
    """Per vendor and brand, from the lifecycle rollups (docs/analysts.md): tokens accepted, delivered to the
    device (the vendor's receipt, or the app's ack), opened (the app's SDK)."""
    return f"""
    SELECT vendor, brand, sum(accepted) AS accepted, sum(delivered) AS delivered, sum(opened) AS opened,
           if(delivered > 0, toString(round(delivered / accepted, 3)), '-') AS delivery_rate,
           if(delivered > 0, toString(round(opened / delivered, 3)), '-') AS open_rate,
           if(delivered > 0, toString(round(quantileTDigestMerge(0.99)(accepted_to_delivered_ms))), '-') AS p99_delivered_ms
    FROM {db}.rollup_minute
    WHERE app_id = '{DEMO_APP}' AND campaign = 'demo-{run_id}'
    GROUP BY vendor, brand ORDER BY vendor, brand"""


def show_rates(settings: Settings, run_id: str) -> None:
    """Delivery and open rates by vendor and brand, once the receipts and opens stop coming."""
    ch = clickhouse.connect(settings)
    sql = rates_sql(settings.clickhouse_database, run_id)
    seen: list[tuple[int, int]] = []

    def settled() -> list[dict] | None:
        rows = ch.rows(sql)
        seen.append((sum(int(r["delivered"]) for r in rows), sum(int(r["opened"]) for r in rows)))
        progress(f"receipts: {seen[-1][0]} delivered, {seen[-1][1]} opened")
        return rows if len(seen) > 8 and seen[-1][0] and len(set(seen[-6:])) == 1 else None  # 5 s without news

    rows = observe.wait_for(settled, 120, "the receipts and opens to arrive", interval_s=1.0)
    print("\n\nDelivery and open rates (pushpipe.rollup_minute): deliveries from the vendors' receipts and the apps' acks"
          " (APNs, FCM; vivo's receipts only for single sends), opens from the apps' SDKs:")
    status_view.console().print(status_view.rows_table(rows))


def _complete(rows: list[dict], expected: int) -> list[dict] | None:
    return rows if sum(int(r["requested"]) for r in rows) >= expected else None


def show_elasticsearch(settings: Settings, run_id: str) -> None:
    es = elastic.connect(settings)
    es.indices.refresh(index=settings.es_index)
    hits = es.search(index=settings.es_index, query={"term": {"campaign": f"demo-{run_id}"}}, size=1,
                     sort=[{"requested_at": "desc"}])["hits"]["hits"]
    doc_id, msg_id = hits[0]["_id"], hits[0]["_source"]["msg_id"]
    print(f"\nElasticsearch ({settings.es_index}/_doc/{doc_id}):")
    print(json.dumps(hits[0]["_source"], indent=2))
    ch = clickhouse.connect(settings, create=False)
    try:
        delivered = deliveries.of_message(es, ch, settings, DEMO_APP, msg_id)
    finally:
        ch.close()
    shown = dict(list(delivered.items())[:2])
    if len(delivered) > 2:
        shown["..."] = f"{len(delivered) - 2} more deliveries"
    print(f"\nIts deliveries (msg_id {msg_id}; accepted ones from ClickHouse's lifecycle_events, others from "
          f"Elasticsearch's {settings.es_deliveries_index}):")
    print(json.dumps(shown, indent=2))
    print_es_queries(settings, doc_id, msg_id, f"user-{run_id}-0")


def print_es_queries(settings: Settings, doc_id: str, msg_id: str, pin: str) -> None:
    messages, not_accepted = f"{settings.es_url}/{settings.es_index}", f"{settings.es_url}/{settings.es_deliveries_index}"
    print(f"""
Elasticsearch, one message (counts, vendors), its deliveries that were not accepted (one per token), and a pin's:
  curl '{messages}/_doc/{doc_id}?pretty'
  curl '{not_accepted}/_search?q=app_id:{DEMO_APP}+AND+msg_id:{msg_id}&size=20&pretty'
  curl '{not_accepted}/_search?q=app_id:{DEMO_APP}+AND+pin:{pin}&sort=completed_at:desc&size=20&pretty'""")


def show_diagnosis(settings: Settings, pin: str) -> None:
    """What support staff see first of one demo user: the verdict of `pushpipe diagnose`."""
    from pushpipe.support import diagnose

    story = diagnose.pin_story(settings, DEMO_APP, pin)
    print(f"\npushpipe diagnose {DEMO_APP} --pin {pin} (the verdict; the command shows the devices and pushes too):")
    for line in story["verdict"]:
        print(f"  - {line}")


def print_next_steps(settings: Settings, pin: str) -> None:
    db = settings.clickhouse_database
    print(f"""
The stack is still running. Next:
  pushpipe status                                   # components, each stage's figures, firing alerts
  open {settings.console_url}                  # the web console: rates by vendor and brand, health, diagnosis
  pushpipe diagnose {DEMO_APP} --pin {pin}          # one user's story; --msg MSG_ID for one message's
  pushpipe test-push {DEMO_APP} --pin {pin}         # a test push, followed to the vendor's answer and the receipt
  pushpipe report --week --app {DEMO_APP}             # the week as a phone-sized PNG
  pushpipe sql "SELECT * FROM {db}.delivery_per_minute ORDER BY minute DESC LIMIT 10"
  curl '{masked_url(settings.clickhouse_url)}/?query=SELECT+count()+FROM+{db}.dispatch_results'
  curl '{masked_url(settings.es_url)}/{settings.es_index}/_search?q=app_id:{DEMO_APP}&size=1&pretty'
  pushpipe down                                     # stop everything""")
