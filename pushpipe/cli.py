"""pushpipe: up | down | status | upgrade | demo | sql | receipts-setup | diagnose | test-push | report | schemas | app (typer; tables with rich)."""
from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from pushpipe.config import Settings, load, masked_url

if TYPE_CHECKING:
    from pushpipe.ingress.apps import Registry
    from pushpipe.schemas.apps import App

T = TypeVar("T")
app = typer.Typer(name="pushpipe", help="Push-notification pipeline on Kafka + PyFlink.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_show_locals=False)  # locals would show the settings' passwords


def show_status(settings: Settings, as_json: bool = False, one_line: bool = False) -> None:
    """The components' health, each stage's figures and the firing alerts, once (as JSON: indented, or on one line)."""
    from pushpipe import status_view, stream_health
    from pushpipe.infra import stack

    components = stack.component_statuses(settings)
    health = stream_health.read(settings.prometheus_url)
    if as_json:
        typer.echo(json.dumps(status_view.document(components, health), indent=None if one_line else 2))
    else:
        status_view.console().print(status_view.render(components, health))


@app.command()
def up(services_only: Annotated[bool, typer.Option("--services-only", help="Start the services only, not the Flink jobs.")] = False,
       cluster: Annotated[bool, typer.Option("--cluster", help="Run the jobs on a Flink standalone session cluster (a JobManager and "
                                             "two TaskManagers), sent with `flink run`: PUSHPIPE_FLINK_MODE=cluster.")] = False,
       ) -> None:
    """Install and start Kafka, Elasticsearch, ClickHouse, simulators, monitoring, the web console and the jobs, then show the status.

    Idempotent. Exits 1, naming each component, when anything is not healthy once up has finished."""
    from pushpipe.infra import stack

    settings = load(flink_mode="cluster") if cluster else load()
    down_now = stack.up(settings, with_jobs=not services_only)
    show_status(settings)
    if down_now:
        print("pushpipe up: not healthy: " + "; ".join(down_now), file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def down() -> None:
    """Stop everything pushpipe started."""
    from pushpipe.infra import stack

    stack.down(load())


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document (components, prometheus, stages, alerts)"
                                                             " and nothing else.")] = False,
           watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C (with --json: one document per line).")] = False,
           every: Annotated[float, typer.Option("--every", "-n", min=0.5, metavar="SECONDS", help="Seconds between refreshes with --watch.")]
           = 2.0) -> None:
    """Each component's health, each stage's figures from Prometheus, and the firing alerts.

    Components: version, address, health, restarts. Stages (fanout, dispatch and each of its vendors, analytics, gateway):
    throughput, Kafka consumer lag, failure rate, p99 due-to-accepted latency, dead letters, open breakers, firing alerts.
    When Prometheus does not answer, status says so and still shows the components."""
    settings = load()
    if not watch:
        show_status(settings, as_json)
        return
    try:
        if as_json:
            while True:
                show_status(settings, as_json=True, one_line=True)
                time.sleep(every)
        _watch_live(settings, every)
    except KeyboardInterrupt:  # the way out of --watch
        pass


def _watch_live(settings: Settings, every: float) -> None:
    from rich.console import RenderableType
    from rich.live import Live

    from pushpipe import status_view, stream_health
    from pushpipe.infra import stack

    def screen() -> RenderableType:
        return status_view.render(stack.component_statuses(settings), stream_health.read(settings.prometheus_url),
                                  status_view.watch_title(every))

    out = status_view.console()
    if not out.is_terminal:  # a pipe or a log: one screen after the other (rich.live would print only the last)
        while True:
            out.print(screen())
            time.sleep(every)
    with Live(screen(), console=out, auto_refresh=False) as live:
        while True:
            time.sleep(every)
            live.update(screen(), refresh=True)


@app.command()
def upgrade(job: Annotated[str, typer.Argument(metavar="JOB", help="fanout, dispatch or analytics.")],
            parallelism: Annotated[int | None, typer.Option("--parallelism", "-p", min=1,
                                                            help="The new job's parallelism (default: PUSHPIPE_FLINK_PARALLELISM).")]
            = None) -> None:
    """Stop a job on the Flink cluster with a savepoint and start the code installed now from it (cluster mode).

    Device directories, dedup windows, schedules, Kafka offsets (in the savepoint) and the send ledger (a file) survive;
    each step is printed with its seconds. Embedded jobs need no savepoint: they resume from their latest checkpoint."""
    from pushpipe.config import JOBS
    from pushpipe.infra import clusterjobs

    if job not in JOBS:
        raise typer.BadParameter(f"one of {', '.join(JOBS)}", param_hint="JOB")
    settings = cluster_settings(job)
    if settings is None:
        print(f"pushpipe upgrade: {job} is not on a Flink cluster. Upgrading with a savepoint is a cluster-mode command "
              "(`pushpipe up --cluster`, PUSHPIPE_FLINK_MODE=cluster); an embedded job resumes from its latest checkpoint "
              "when restarted: `pushpipe down && pushpipe up`.", file=sys.stderr)
        raise typer.Exit(2)
    try:
        clusterjobs.upgrade(settings, job, parallelism, report=lambda step: print(f"{job}: {step.what} in {step.seconds:.1f}s"))
    except (clusterjobs.UpgradeFailed, clusterjobs.SubmitFailed) as failed:
        print(f"pushpipe upgrade: {failed}", file=sys.stderr)
        raise typer.Exit(1) from None


def cluster_settings(job: str) -> Settings | None:
    """The settings in cluster mode when the job runs on the cluster (PUSHPIPE_FLINK_MODE=cluster, or a job id recorded
    by `pushpipe up --cluster`); None otherwise."""
    from pushpipe.infra.clusterjobs import ClusterJob

    settings = load()
    if settings.flink_mode == "embedded":
        settings = load(flink_mode="cluster")
        if ClusterJob(job).jid(settings) is None:
            return None
    return settings


@app.command()
def demo(users: Annotated[int, typer.Option(min=1, help="How many users to push to.")] = 1000,
         devices_per_user: Annotated[int, typer.Option(min=1, help="Simulated devices per user, across the vendors.")] = 3) -> None:
    """Start the stack, send pushes to simulated devices, show the analytics."""
    from pushpipe import demo as run_demo

    run_demo.run(load(), pins=users, per_pin=devices_per_user)


@app.command()
def sql(query: Annotated[str, typer.Argument(help="The SQL, e.g. \"SELECT * FROM pushpipe.delivery_per_minute LIMIT 10\".")]) -> None:
    """Run SQL against the pipeline's ClickHouse and print the rows as a table (with a FORMAT clause, as ClickHouse
    formats them)."""
    from clickhouse_connect.driver.exceptions import Error as ClickHouseError

    from pushpipe import status_view
    from pushpipe.sinks import clickhouse

    settings = load()
    try:
        ch = clickhouse.connect(settings, create=False)
        if clickhouse.FORMAT_CLAUSE.search(query):
            print(ch.text(query), end="")
            return
        rows = ch.rows(query)
    except ClickHouseError as failed:
        print(f"pushpipe sql: {_first_line(failed)}", file=sys.stderr)
        raise typer.Exit(1) from None
    if rows:
        status_view.console().print(status_view.rows_table(rows))


def _first_line(failed: Exception) -> str:
    """The line of an error that says what is wrong (ClickHouse's exception, else the first), any URL's password masked."""
    lines = [line.strip() for line in str(failed).strip().splitlines() if line.strip()] or [type(failed).__name__]
    return masked_url(next((line for line in lines if "Exception:" in line), lines[0]))


@app.command("receipts-setup")
def receipts_setup(app_id: Annotated[str, typer.Argument(metavar="APP", help="The app id.")]) -> None:
    """Print an app's receipt URLs for the HMS and Honor consoles and the key its SDK sends with events.

    They are credentials: asked for, printed once, never logged. A registered app's SDK key is its own (it changes with
    `pushpipe app rotate-secret APP --callback`), so the app registry is read."""
    from pushpipe.gateway import signing
    from pushpipe.infra import gateway
    from pushpipe.schemas import keys

    settings = load()
    keys.check_app_id(app_id)
    registered = _registry_call(settings, lambda registry: registry.store.get(app_id))
    key = signing.key_for(signing.load_key(settings.receipt_key_file, create=True), registered)
    for vendor, url in gateway.console_urls(settings).items():
        print(f"{vendor} console receipt URL:  {url}")
    print(f"{app_id} SDK events:          POST {settings.gateway_url}/v1/sdk/{app_id}/events")
    print(f"{app_id} SDK key (X-Pushpipe-Key): {signing.sdk_key(key, app_id)}" + ("" if registered else "  (an app not in the registry)"))


def _support_call(settings: Settings, command: str, call: Callable[[], T]) -> T:
    """Runs a support command's read; bad input, nothing found or a store not answering end it with one clear line."""
    from pushpipe.support import diagnose, unreachable

    try:
        return call()
    except (ValueError, diagnose.NotFound) as bad:
        print(f"pushpipe {command}: {bad}", file=sys.stderr)
    except unreachable.ERRORS as down:
        print(f"pushpipe {command}: {unreachable.describe(settings, down)}", file=sys.stderr)
    raise typer.Exit(1)


@app.command()
def diagnose(app_id: Annotated[str, typer.Argument(metavar="APP", help="The app id.")],
             pin: Annotated[str | None, typer.Option(help="A user: devices, preferences, caps, quiet hours, recent pushes.")] = None,
             msg: Annotated[str | None, typer.Option(help="A message: its path through every hop, counts, failures.")] = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print the story as one JSON document.")] = False) -> None:
    """Why did (or didn't) this user get the push? One pin's or one message's story, with the reasons in plain words."""
    from pushpipe import status_view
    from pushpipe.support import diagnose as stories
    from pushpipe.support import story_view

    settings = load()
    if (pin is None) == (msg is None):
        print("pushpipe diagnose: give exactly one of --pin or --msg", file=sys.stderr)
        raise typer.Exit(2)
    if pin is not None:
        story = _support_call(settings, "diagnose", lambda: stories.pin_story(settings, app_id, pin))
        shown = story_view.pin_story(story)
    else:
        story = _support_call(settings, "diagnose", lambda: stories.message_story(settings, app_id, msg or ""))
        shown = story_view.message_story(story)
    if as_json:
        typer.echo(json.dumps(story, indent=2))
    else:
        status_view.console().print(shown)


@app.command("test-push")
def test_push(app_id: Annotated[str, typer.Argument(metavar="APP", help="The app id.")],
              pin: Annotated[str | None, typer.Option(help="Every active device of this user.")] = None,
              token: Annotated[str | None, typer.Option(help="One device.")] = None,
              environment: Annotated[str, typer.Option(help="The app's environment: production or test.")] = "production",
              timeout: Annotated[float, typer.Option(min=1, metavar="SECONDS", help="How long to follow it.")] = 60.0) -> None:
    """Send a test push to one device or all of a pin's devices, and follow it live to the vendor's answer and the receipt.

    Exits 0 when every device's vendor accepted it (receipts that have not come within the timeout are listed), 1 otherwise."""
    from pushpipe.support import story_view, testpush

    settings = load()
    sent = _support_call(settings, "test-push", lambda: testpush.send(settings, app_id, pin, token, environment))
    print(f"test push {sent['msg_id']} to {len(sent['targets'])} device(s), following for up to {timeout:g} s")
    shown: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        now = _support_call(settings, "test-push", lambda: testpush.progress(settings, app_id, sent["msg_id"], sent["targets"]))
        for line in (story_view.progress_line(d) for d in now["deliveries"]):
            if line not in shown:
                shown.add(line)
                print(line)
        if now["done"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    all_accepted, summary = testpush.summary(now)
    print(f"test push {sent['msg_id']}: {summary}")
    if not all_accepted:
        raise typer.Exit(1)


@app.command()
def report(week: Annotated[bool, typer.Option("--week", help="The 7 days ending with --end (the only period for now; required).")] = False,
           app_id: Annotated[str | None, typer.Option("--app", metavar="APP", help="One app's figures (default: all apps).")] = None,
           end: Annotated[str | None, typer.Option("--end", metavar="YYYY-MM-DD", help="The week's last day, UTC (default: today).")] = None,
           out: Annotated[Path | None, typer.Option("--out", metavar="PATH", help="Where to write the PNG (default: "
                                                    "run/reports/week-<end>-<app or all>.png).")] = None) -> None:
    """The week's key figures from ClickHouse as a phone-sized PNG: sends, delivery and open rates by day and by vendor,
    failures by reason, latency. Prints the PNG's path and the sends, delivery rate and open rate."""
    def usage(message: str) -> typer.Exit:
        print(f"pushpipe report: {message}", file=sys.stderr)
        return typer.Exit(2)

    if not week:
        raise usage("say which period: --week (the 7 days ending with --end, default today; the only period for now)")
    try:
        last_day = dt.datetime.strptime(end, "%Y-%m-%d").date() if end is not None else None
    except ValueError:
        raise usage(f"--end {end!r} is not a date YYYY-MM-DD") from None

    from clickhouse_connect.driver.exceptions import Error as ClickHouseError

    from pushpipe.schemas import keys
    from pushpipe.support import report as week_report

    settings = load()
    try:
        path, figures = week_report.week(settings, last_day, app_id, out)
    except keys.InvalidId as bad:
        raise usage(str(bad)) from None
    except ClickHouseError as failed:
        print(f"pushpipe report: ClickHouse at {masked_url(settings.clickhouse_url)}: {_first_line(failed)}", file=sys.stderr)
        raise typer.Exit(1) from None
    except OSError as failed:  # the PNG not written: --out a folder, no room, no permission
        print(f"pushpipe report: cannot write the PNG: {failed}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(path)
    for line in week_report.summary(figures):
        print(line)


schemas_app = typer.Typer(name="schemas", help="pushpipe's Avro schemas in a Confluent-compatible schema registry.", no_args_is_help=True)
app.add_typer(schemas_app)


@schemas_app.command("register")
def schemas_register() -> None:
    """Register each topic's value schema in the registry at PUSHPIPE_SCHEMA_REGISTRY_URL, each subject BACKWARD compatible.

    Subjects: <topic>-value (Confluent's default TopicNameStrategy); push.receipts carries two record types, so
    pushpipe.Receipt and pushpipe.ReceiptBatch (RecordNameStrategy). Idempotent (`pushpipe up` does it in the embedded
    registry). Exits 1 when the registry does not answer or refuses a schema (e.g. one incompatible with a subject's
    earlier versions)."""
    from pushpipe.schemas import registry

    settings = load()
    if not settings.schema_registry_url:
        print(f"pushpipe schemas register: no schema registry: set {registry.URL_ENV}", file=sys.stderr)
        raise typer.Exit(1)
    try:
        for name, done in registry.register_all(settings.schema_registry_url, settings.topics):
            print(f"{done.subject:<30} {name:<16} id {done.schema_id:<5} version {done.version:<4} {registry.COMPATIBILITY}")
    except registry.RegistryError as failed:
        print(f"pushpipe schemas register: {masked_url(str(failed))}", file=sys.stderr)
        raise typer.Exit(1) from None

apps_cli = typer.Typer(help="The apps that may use the HTTP API: create, rotate-secret, list (kept on the compacted Kafka topic apps).",
                       no_args_is_help=True)
app.add_typer(apps_cli, name="app")


def open_registry(settings: Settings) -> Registry:
    """The app registry on the stack's Kafka, read to its end (tests replace this with one in memory)."""
    from pushpipe.ingress.apps import KafkaApps, Registry

    store = KafkaApps(settings)
    store.follower.wait_loaded(30)
    return Registry(store)


def _registry_call(settings: Settings, call: Callable[[Registry], T]) -> T:
    """Runs a registry command; a refused operation or Kafka not answering ends it with one clear line."""
    from confluent_kafka import KafkaException

    from pushpipe.ingress.apps import AppProblem

    registry = None
    try:
        registry = open_registry(settings)
        return call(registry)
    except AppProblem as bad:
        print(f"pushpipe app: {bad}", file=sys.stderr)
    except (KafkaException, TimeoutError) as down:
        print(f"pushpipe app: Kafka at {settings.kafka_bootstrap} did not answer ({down}): is the stack up (pushpipe up)?", file=sys.stderr)
    finally:
        close = getattr(registry.store, "close", None) if registry is not None else None
        if close is not None:
            close()
    raise typer.Exit(1)


def _show_secrets(app_id: str, secret: str | None, callback: tuple[str, str] | None) -> None:
    if secret is not None:
        print(f"API secret of {app_id} (shown this once: keep it; send it as Authorization: Bearer <secret>):\n  {secret}")
    if callback is not None:
        print(f"receipt callback secret of {app_id} (pushpipe signs its receipt callbacks with it):\n  {callback[0]}")
        print(f"SDK key of {app_id} (its SDK sends it as X-Pushpipe-Key; it changes with the callback secret):\n  {callback[1]}")


def _callback_secrets(settings: Settings, app: App) -> tuple[str, str]:
    """The app's receipt callback secret and the SDK key made with it."""
    from pushpipe.gateway import signing
    from pushpipe.ingress.apps import callback_secret

    key = signing.load_key(settings.receipt_key_file, create=True)
    return callback_secret(key, app), signing.sdk_key(signing.key_for(key, app), app.app_id)


@apps_cli.command("create")
def app_create(app_id: Annotated[str, typer.Argument(metavar="APP", help="The app id: 1-64 of A-Z a-z 0-9 . _ -")],
               environment: Annotated[str, typer.Option(help="production, or test (reaches only test devices).")] = "production",
               vendors: Annotated[str, typer.Option(help="The vendors its devices may use, comma-separated (default: all).")] = "",
               rate: Annotated[float, typer.Option(min=0.001, metavar="PER_S", help="Pushes it may send per second.")] = 100.0) -> None:
    """Register an app; prints its API secret and receipt callback secret, once (they are never shown again, nor logged)."""
    settings = load()
    chosen = [v.strip() for v in vendors.split(",") if v.strip()]
    made, secret = _registry_call(settings, lambda registry: registry.create(app_id, environment, chosen, rate))
    print(f"app {app_id} created: {environment}, vendors {', '.join(made.vendors) or 'all'}, {rate:g} pushes/s")
    _show_secrets(app_id, secret, _callback_secrets(settings, made))


@apps_cli.command("rotate-secret")
def app_rotate_secret(app_id: Annotated[str, typer.Argument(metavar="APP", help="The app id.")],
                      callback: Annotated[bool, typer.Option("--callback", help="Rotate the receipt callback secret too.")] = False,
                      callback_only: Annotated[bool, typer.Option("--callback-only", help="Rotate only the receipt callback "
                                                                  "secret (and SDK key): the API secret stays.")] = False) -> None:
    """Give an app a new API secret (the old one stops working at once); prints it once. With --callback(-only), a new
    receipt callback secret: the callback URLs signed before and the old SDK key are refused from then on."""
    settings = load()
    if callback_only:
        rotated = _registry_call(settings, lambda registry: registry.rotate_callback(app_id))
        _show_secrets(app_id, None, _callback_secrets(settings, rotated))
        return
    rotated, secret = _registry_call(settings, lambda registry: registry.rotate_secret(app_id, callback))
    _show_secrets(app_id, secret, _callback_secrets(settings, rotated) if callback else None)


@apps_cli.command("list")
def app_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False) -> None:
    """The apps: environment, vendors, rate, when made and changed (never a secret)."""
    from pushpipe import status_view

    settings = load()
    shown = _registry_call(settings, lambda registry: registry.list())
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
        return
    rows = [{"app": a["app_id"], "environment": a["environment"], "vendors": ",".join(a["vendors"]) or "all",
             "pushes/s": f"{a['rate_per_s']:g}", "created": _when(a["created_at"]), "updated": _when(a["updated_at"])} for a in shown]
    if rows:
        status_view.console().print(status_view.rows_table(rows))
    else:
        print("no apps yet: pushpipe app create APP")


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def main(argv: list[str] | None = None) -> None:
    """The `pushpipe` script. Returns when a command succeeds (typer would exit 0), so that Python code can call it;
    exits non-zero otherwise (130 on Ctrl-C, 2 on a usage error, 1 with the message on bad settings)."""
    try:
        app(args=argv, prog_name="pushpipe")
    except SystemExit as done:
        if done.code not in (0, None):
            raise


if __name__ == "__main__":
    main()
