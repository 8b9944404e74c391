"""pushpipe: up | down | status | demo | sql | receipts-setup."""
from __future__ import annotations

import argparse
import sys

from pushpipe.config import load


def cmd_up(args: argparse.Namespace) -> None:
    """Exits 1, naming each component, when anything is not healthy once up has finished."""
    from pushpipe.infra import stack

    down = stack.up(load(), with_jobs=not args.services_only)
    cmd_status(args)
    if down:
        print("pushpipe up: not healthy: " + "; ".join(down), file=sys.stderr)
        sys.exit(1)


def cmd_down(args: argparse.Namespace) -> None:
    from pushpipe.infra import stack

    stack.down(load())


def cmd_status(args: argparse.Namespace) -> None:
    from pushpipe.infra import stack

    rows = stack.status_rows(load())
    print(stack.format_table(stack.STATUS_HEADER, rows))


def cmd_demo(args: argparse.Namespace) -> None:
    from pushpipe import demo

    demo.run(load(), pins=args.users, per_pin=args.devices_per_user)


def cmd_sql(args: argparse.Namespace) -> None:
    from pushpipe.infra import stack
    from pushpipe.sinks import clickhouse

    rows = clickhouse.connect(load(), create=False).rows(args.query)
    if rows:
        header = tuple(rows[0])
        print(stack.format_table(header, [tuple(str(r[c]) for c in header) for r in rows]))


def cmd_receipts_setup(args: argparse.Namespace) -> None:
    """What an app's team needs for receipts: the receipt URLs to set in HMS's and Honor's consoles, and the key its
    SDK sends with events. They are credentials: asked for, printed once, never logged."""
    from pushpipe.gateway import signing
    from pushpipe.infra import gateway
    from pushpipe.schemas import keys

    settings = load()
    keys.check_app_id(args.app)
    key = signing.load_key(settings.receipt_key_file, create=True)
    for vendor, url in gateway.console_urls(settings).items():
        print(f"{vendor} console receipt URL:  {url}")
    print(f"{args.app} SDK events:          POST {settings.gateway_url}/v1/sdk/{args.app}/events")
    print(f"{args.app} SDK key (X-Pushpipe-Key): {signing.sdk_key(key, args.app)}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pushpipe", description="push-notification pipeline on Kafka + PyFlink")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="install and start Kafka, Elasticsearch, ClickHouse, simulators and the jobs")
    up.add_argument("--services-only", action="store_true", help="do not start the Flink jobs")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop everything").set_defaults(func=cmd_down)
    sub.add_parser("status", help="component, version, address and health").set_defaults(func=cmd_status)
    demo = sub.add_parser("demo", help="start the stack, send pushes to simulated devices, show the analytics")
    demo.add_argument("--users", type=int, default=1000)
    demo.add_argument("--devices-per-user", type=int, default=3)
    demo.set_defaults(func=cmd_demo)
    sql = sub.add_parser("sql", help="run SQL against the pipeline's ClickHouse")
    sql.add_argument("query")
    sql.set_defaults(func=cmd_sql)
    setup = sub.add_parser("receipts-setup", help="print an app's receipt URLs for the vendor consoles and its SDK key")
    setup.add_argument("app", help="the app id")
    setup.set_defaults(func=cmd_receipts_setup)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
