"""Python's cyclic garbage collector set for streams of short-lived records: in each job's worker interpreter (at
the first operator `open`: liveness.watched) and in the send API and the receipt gateway (at start).

Its defaults (a young collection every 700 new container objects, a full one every 100 young) suit a program
whose objects are few and long-lived. An operator handles a batch of a thousand tokens as thousands of dicts and
tuples that live for one call: with the defaults they are still alive when a young collection comes, survive it,
move up, and make the full collections, which walk every object the worker holds (a shard directory's cached
devices, analytics' recent token lives), frequent. async-profiler put the collector at 17% of fan-out's CPU and 5%
of analytics' in a 100,000-device broadcast. With young collections every 100,000 objects, most of a call's objects
are freed by their reference counts before any collection sees them; what start-up made (PyFlink, Beam, the
clients) is frozen, so full collections skip it. bench.compare, broadcast of 100,000 devices: fan-out 0.70-0.81x
the CPU per token (README, 2026-12-03). The send API, where only start-up was frozen: a request's objects (its
future, its parsed body, its answer) live for the milliseconds Kafka takes to acknowledge, and at 5,000 sends/s
the default's young collections every 700 objects moved thousands of them up into collections that walk every
connection's; p99 at 5,000 sends/s 12-17 ms where 27-55 (bench.ingress, in turns on one stack).
"""
from __future__ import annotations

import gc

THRESHOLDS = (100_000, 50, 100)  # young, middle (young collections per middle one), old (middle per full)


def tune_for_streams() -> None:
    """Once per interpreter (a later call changes nothing): freeze what exists, collect rarely."""
    if gc.get_threshold() == THRESHOLDS:
        return
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
