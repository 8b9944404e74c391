"""Broadcasts follow the same policy as pin pushes, through the real stack: the embedded defaults cap marketing
at 3 a day per user and the China vendors at 2 marketing messages per device a day; quiet hours hold a
marketing broadcast back until the end of each user's window, in the user's own time zone.

Each test takes the `pipeline` fixture (infra/ starts Kafka, the Flink jobs, Elasticsearch, ClickHouse and the
vendor simulator), produces devices, preferences and requests to Kafka, and reads the simulator's accepted
pushes and the outcomes in Elasticsearch."""
from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from zoneinfo import ZoneInfo

import pytest

from pushpipe import observe
from pushpipe.config import Settings
from pushpipe.infra.simulators import SimulatorAdmin
from pushpipe.producer import PushProducer, device_event, preference_event, push_request
from pushpipe.sinks import elastic
from test_fanout_e2e import prefer
from test_isolation_e2e import registered, sent, tok

pytestmark = pytest.mark.stack


def reasons(settings: Settings, app: str, requests: list[dict]) -> Counter:
    """How many of the requests' outcomes in Elasticsearch give each reason (of those not sent)."""
    es = elastic.connect(settings)
    found: Counter = Counter()
    for request in requests:
        for d in elastic.deliveries(es, settings, app, request["msg_id"]).values():
            if d["outcome"] != "accepted":
                found[d["reason"]] += d["count"] or 1
    return found


def test_broadcasts_and_pin_pushes_share_daily_caps_and_vendor_quotas(pipeline: Settings, producer: PushProducer,
                                                                      admin: SimulatorAdmin, run_id: str) -> None:
    app = f"capped-{run_id}"
    ios, hms = [tok(run_id, n) for n in range(3)], [tok(run_id, 16 + n) for n in range(3)]
    registered(producer, pipeline, *[device_event(app, f"i{n}", t) for n, t in enumerate(ios)],
               *[device_event(app, f"h{n}", t, vendor="hms") for n, t in enumerate(hms)])
    sent(producer, push_request(app, ["i0"], "sale", "pin push", category="marketing"))
    observe.wait_for(lambda: admin.accepted(ios[0])["count"] == 1, 60, "the pin push")
    sales = [push_request(app, [], f"sale {n}", "everyone", target="broadcast", category="marketing") for n in range(4)]
    sent(producer, *sales)
    wanted = {ios[0]: 3, ios[1]: 3, ios[2]: 3, **{t: 2 for t in hms}}  # a cap of 3 a day; HMS: 2 marketing a day
    observe.wait_for(lambda: reasons(pipeline, app, sales)["frequency_cap:marketing"] == 4, 90, "the capped pins")
    observe.wait_for(lambda: reasons(pipeline, app, sales)["vendor_quota:hms:marketing"] == 6, 90, "the HMS quota")
    time.sleep(3)  # anything more would be sent by now
    assert {t: admin.accepted(t)["count"] for t in wanted} == wanted


def quiet_window_from_now(zone: str) -> tuple[str, str, int]:
    """("HH:MM", "HH:MM", end in epoch ms): a quiet window in `zone` that holds now and ends 20-80 s from now."""
    local = dt.datetime.now(ZoneInfo(zone))
    start = local.replace(second=0, microsecond=0)
    end = start + dt.timedelta(minutes=1 if local.second < 40 else 2)
    return start.strftime("%H:%M"), end.strftime("%H:%M"), int(end.timestamp() * 1000)


def test_a_marketing_broadcast_lands_at_the_end_of_each_users_quiet_window(pipeline: Settings, producer: PushProducer,
                                                                          admin: SimulatorAdmin, run_id: str) -> None:
    app, asleep, awake = f"quiet-{run_id}", tok(run_id, 0), tok(run_id, 1)
    registered(producer, pipeline, device_event(app, "kolkata", asleep, timezone="Asia/Kolkata"),
               device_event(app, "new-york", awake, timezone="America/New_York"))
    start, end, ends_at = quiet_window_from_now("Asia/Kolkata")
    # the same wall-clock window for both users: it is now in Kolkata, and 10.5 hours away in New York
    prefer(pipeline, *[preference_event(app, pin, "set_quiet_hours", quiet_start=start, quiet_end=end)
                       for pin in ("kolkata", "new-york")])
    sale = push_request(app, [], "sale", "tonight", target="broadcast", category="marketing")
    sent(producer, sale)
    observe.wait_for(lambda: admin.accepted(awake)["count"] == 1, 60, "the user whose window is not now")
    assert admin.accepted(asleep)["count"] == 0, "the user in the quiet window waits"
    landed = observe.wait_for(lambda: admin.accepted(asleep)["first_at"], 150, "the end of the quiet window")  # s
    assert ends_at <= landed * 1000 < ends_at + 30_000, (ends_at, landed)
