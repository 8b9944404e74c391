"""A vendor outage does not turn into lost pushes, through the real stack.

APNs is down for 60 s in the middle of a stream of pushes to APNs and FCM devices. Tokens that cannot reach
APNs wait for it (held until its breakers let a probe through, outside their retry budget) and are all
accepted once it is back; none fails for circuit_open; FCM pushes keep being accepted meanwhile.

The `pipeline` fixture starts the real Kafka broker, the three Flink jobs, Elasticsearch, ClickHouse and the
vendor simulator; the test produces to Kafka, switches the simulator's APNs outage on and off, and reads the
simulator's accepted pushes and ClickHouse's rows."""
from __future__ import annotations

import time

import pytest

from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, push_request
from pushpipe.sinks import clickhouse
from test_isolation_e2e import registered, sent, tok

pytestmark = pytest.mark.stack
OUTAGE_S = 60


@pytest.fixture
def admin(pipeline: Settings):
    admin = SimulatorAdmin(pipeline.simulator_admin_url)
    yield admin
    admin.configure(vendor="apns", outage=False)


def fcm_token(run_id: str, n: int) -> str:
    return f"{run_id}f{n:04x}:APA91b" + "F" * 140


def test_a_60_s_apns_outage_holds_its_tokens_until_it_is_back_and_never_slows_fcm(pipeline: Settings, producer: PushProducer,
                                                                                  admin: SimulatorAdmin, run_id: str) -> None:
    app, apns_pins, rounds = f"outage-{run_id}", 200, 30
    registered(producer, pipeline, *[device_event(app, f"a{n}", tok(run_id, n)) for n in range(apns_pins)],
               *[device_event(app, f"f{n}", fcm_token(run_id, n), vendor="fcm") for n in range(3 * rounds)])
    sent(producer, *[push_request(app, [f"a{n}"], "t", "b") for n in range(50)])
    observe.wait_for(lambda: admin.accepted(run_id, vendor="apns")["unique"] == 50, 60, "APNs pushes before the outage")
    admin.configure(vendor="apns", outage=True)
    started, fcm_waits = time.monotonic(), []
    for r in range(rounds):  # 5 APNs and 3 FCM pushes every 2 s while APNs is down
        sent(producer, *[push_request(app, [f"a{50 + 5 * r + n}"], "t", "b") for n in range(5)],
             *[push_request(app, [f"f{3 * r + n}"], "t", "b") for n in range(3)])
        since = time.monotonic()
        observe.wait_for(lambda: admin.accepted(f"{run_id}f", vendor="fcm")["unique"] >= 3 * (r + 1), 20, "FCM during the outage",
                         interval_s=0.2)
        fcm_waits.append(time.monotonic() - since)
        time.sleep(max(0.0, started + 2 * (r + 1) - time.monotonic()))
    assert admin.accepted(run_id, vendor="apns")["unique"] == 50, "nothing reached APNs while it was down"
    time.sleep(max(0.0, started + OUTAGE_S - time.monotonic()))
    admin.configure(vendor="apns", outage=False)
    back = time.monotonic()
    observe.wait_for(lambda: admin.accepted(run_id, vendor="apns")["unique"] == apns_pins, 180, "every APNs push once it is back")
    print(f"\nAPNs back: all {apns_pins} accepted {time.monotonic() - back:.1f} s later;"
          f" FCM accepted within {max(fcm_waits):.1f} s at most during the outage")
    assert max(fcm_waits) < 15, "FCM never slowed"
    ch = clickhouse.connect(pipeline, create=False)
    sql = (f"SELECT sum(accepted) AS accepted, sum(unavailable) AS unavailable, sum(failed) AS failed"
           f" FROM {pipeline.clickhouse_database}.dispatch_results FINAL WHERE app_id = '{app}' AND vendor = 'apns'")
    row = observe.wait_for(lambda: (r := ch.rows(sql)[0]) and int(r["accepted"] or 0) == apns_pins and r, 60, "ClickHouse's counts")
    ch.close()
    assert (int(row["unavailable"]), int(row["failed"])) == (0, 0), "no APNs token failed for good"
