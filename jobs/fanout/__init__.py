"""Fan-out job: requests, device events and preferences -> batches per vendor on the priority lanes.

    push.requests ─ parse (+ the app's rules, from the app registry) ─ key msg_id: Intake (dedup window, TTL, deliver_at and cron timers)
        │  (a pin push due now skips Intake: straight to its PinDirectory, which deduplicates it and checks its TTL)
        ├─ pin, pins ──────────> key app|pin: PinDirectory (devices, preferences, caps, quiet hours,
        │                          templates, payload limits) ─> batches, or per pin-list to the Batcher
        └─ tokens, broadcast, ─> key app|shard: ShardDirectory (devices by token hash, the opt-outs
           segment                 of their users) ─> batches
    device.events + device.feedback, user.preferences ─ parse ─> both directories
Broadcasts, segments and tokens honour opt-outs and unsubscribe. A broadcast or segment that quiet hours,
daily caps or vendor quotas can touch goes from the shards to each matching pin (TO_PIN), whose directory
holds the user's whole history and applies the same policy as to a pin push; one none of them can touch
(urgent, uncapped) is expanded by the shards alone.
Batches go to push.dispatch.<priority>: a big one alone, small ones (a single pin's) through the
Bundler, which packs those of one (lane, app, vendor) into one record. Everything not sent becomes a
result with its reason; bad input goes to push.dlq.

Modules: job (the graph), parse, intake, pin_directory, shard_directory, batcher, bundler, tally (one
operator each); messages (what travels between them); and beside them the pure logic they call: devices,
shards, expand, placement, records, validate, apprules.

Run: python -m pushpipe.jobs.fanout
"""
