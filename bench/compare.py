"""A benchmark at two commits in one sequence of runs, alternating, and the ratio B/A of each figure's medians.

    .venv/bin/python -m bench.compare main~3 HEAD --rounds 3 -- bench.ingress --noop --seconds 5
    .venv/bin/python -m bench.compare HEAD . -- bench.e2e --requests 500      # `.`: the working tree as it is
    .venv/bin/python -m bench.compare A B --figure 'p99 (?P<p99_ms>[\\d.]+)' -- bench.ingress --noop

Why: on these 2-core machines a figure moves by ±25% from one run to the next, so two figures measured an hour
apart say little. Runs of A and B interleaved in one sequence (ABBA by default: a linear drift falls on both
alike) share the machine's mood; the ratio of their medians is the comparison, and each side's min-max shows
whether the difference is larger than the noise.

Each side is a commit checked out in a temporary git worktree (removed at the end), or `.`: the working tree as
it is. A side's code is imported through an import root of its own: a temporary `pushpipe/` of symlinks to the
checkout's pushpipe/ files and to the folders pyproject.toml's package-dir maps (pushpipe.jobs -> jobs/, ...;
the same layout as .mypy/pushpipe), run as `python -m <bench module>` with PYTHONPATH=<import root>:<checkout>,
PYTHONSAFEPATH=1 (so the cwd, the checkout, is not put ahead of the import root) and cwd = the checkout. Both
come ahead of this venv's editable install, whose finder setuptools appends to sys.meta_path; before the
first run each side checks where `pushpipe`, its subpackages and the bench module are imported from, and stops
unless all of them are in its checkout. The benchmark's subprocesses inherit the environment and cwd.

Figures: each --figure is a regex searched in every line of a run's stdout. Its number is the group named
`value`, else the first unnamed group, else the first group; it is named after its other named groups' text if
it has any (`(?P<label>...)`), else after the number's group if that is named (`(?P<p99_ms>...)`), else after the
regex; a group named `unit` is appended in parentheses. A name matched again in the same run is numbered
(`name #2`). Without --figure, presets per bench (PRESETS) read what bench.ingress, bench.e2e, bench.broadcast,
bench.receipts, bench.dispatch and bench.diagnose print; any other module gets the generic `label  number unit`
table rows (infra/stack.py's format_table) and CPU tables (bench/cpu.py).

Stack benchmarks (bench.e2e, bench.broadcast, ...) measure the running stack, whose Flink jobs and services run
the code of whichever checkout started them: without --restart-jobs only the bench-side code differs between A
and B. --restart-jobs, before each run, stops the supervisor, the three Flink jobs and the project's Python
services (send API, receipt gateway, console, schema registry simulator: the components run as
`python -m pushpipe.<...>`), then runs that checkout's `stack.up`, which starts them again under the side's
environment (the jobs' process trees, their Python workers and the supervisor's later restarts inherit it).
Left as they run: Kafka, Elasticsearch, ClickHouse, Prometheus and its kin, and the vendor simulators (the
measuring apparatus, like the load driver). At the end, whatever happened, it restarts the same components once
more with the interpreter and PYTHONPATH the supervisor had before the first restart, so that the stack does not
keep running code from a deleted worktree. The stack's data, topics and settings are shared by both sides:
a commit that changes a schema, a topic or a setting's meaning is not compared fairly this way. --restart-jobs
uses the same calls as `pushpipe up` and bench/overhead.py, but has not yet been run against a real stack.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

WORKING_TREE = "."
NUM = r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
WORDS = r"\S+(?: \S+)*"  # a table cell: words with single spaces (cells are two or more spaces apart)


# ---------------------------------------------------------------------------------------------------------------
# figures


@dataclass(frozen=True)
class FigureSpec:
    """A number to read from a run's output: `pattern` searched in each line, named by `template` (str.format over
    the pattern's named groups; a matched `unit` group is appended in parentheses)."""

    template: str
    pattern: re.Pattern[str]

    @classmethod
    def of(cls, template: str, regex: str) -> FigureSpec:
        return cls(template, re.compile(regex))

    @classmethod
    def from_regex(cls, regex: str) -> FigureSpec:
        """A --figure: one group for the number (named `value`, or the first), named after that group or the regex."""
        pattern = re.compile(regex)
        if pattern.groups == 0:
            raise ValueError(f"--figure {regex!r}: no capture group for the number")
        labels = [name for name in pattern.groupindex if name not in ("value", "unit") and pattern.groupindex[name] != _value_group(pattern)]
        if labels:
            template = " ".join("{" + name + "}" for name in labels)
        else:
            named = {index: name for name, index in pattern.groupindex.items()}
            template = _literal(named.get(_value_group(pattern), regex))
        return cls(template, pattern)

    def name(self, match: re.Match[str]) -> str:
        groups = {key: (value or "").strip() for key, value in match.groupdict().items()}
        unit = groups.get("unit")
        return self.template.format(**groups) + (f" ({unit})" if unit else "")

    def value(self, match: re.Match[str]) -> float | None:
        text = match.group(_value_group(self.pattern))
        try:
            return float(text.replace(",", "")) if text else None
        except ValueError:
            return None


def _value_group(pattern: re.Pattern[str]) -> int:
    """The number's group: the one named `value`, else the first unnamed one, else the first."""
    if "value" in pattern.groupindex:
        return pattern.groupindex["value"]
    named = set(pattern.groupindex.values())
    return next((index for index in range(1, pattern.groups + 1) if index not in named), 1)


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def table_rows() -> FigureSpec:
    """A `figure  value [unit]` row of infra/stack.py's format_table."""
    return FigureSpec.of("{label}", rf"^(?P<label>{WORDS})\s{{2,}}(?P<value>{NUM})(?: (?P<unit>\S+))?$")


def cpu_rows(per: str) -> FigureSpec:
    """A row of bench/cpu.py's CpuMeter table: `component  12.3 s  456 µs`, the µs of CPU per unit of work."""
    return FigureSpec.of(f"CPU per {per}: {{label}}", rf"^(?P<label>{WORDS})\s{{2,}}{NUM} s\s{{2,}}(?P<value>{NUM}) (?P<unit>µs)$")


PRESETS: dict[str, list[FigureSpec]] = {
    "bench.ingress": [
        FigureSpec.of("answered 202 per s", rf"^answered 202: (?P<value>{NUM})/s"),
        FigureSpec.of("latency p50 (ms)", rf"^latency ms: p50 (?P<value>{NUM})"),
        FigureSpec.of("latency p99 (ms)", rf"^latency ms: .*\bp99 (?P<value>{NUM})"),
        FigureSpec.of("latency p999 (ms)", rf"^latency ms: .*\bp999 (?P<value>{NUM})"),
        FigureSpec.of("CPU per request: {label}", rf"^CPU (?P<label>\S+): {NUM} s, (?P<value>{NUM}) (?P<unit>µs) per request"),
    ],
    "bench.e2e": [table_rows(), cpu_rows("request")],
    "bench.broadcast": [table_rows(), cpu_rows("token")],
    "bench.dispatch": [table_rows()],
    "bench.receipts": [
        FigureSpec.of("gateway acknowledged", rf"gateway: (?P<value>{NUM}) (?P<unit>receipts/s)"),
        FigureSpec.of("lifecycle counted after", rf"counted the last of them (?P<value>{NUM}) (?P<unit>s) after"),
        cpu_rows("receipt"),
    ],
    "bench.diagnose": [
        FigureSpec.of("{label} p50", rf"^(?P<label>{WORDS})\s+p50 (?P<value>{NUM}) (?P<unit>s)\s+max"),
        FigureSpec.of("{label} max", rf"^(?P<label>{WORDS})\s+p50 {NUM} s\s+max (?P<value>{NUM}) (?P<unit>s)"),
    ],
}
GENERIC = [table_rows(), cpu_rows("unit")]


def specs_for(module: str, figures: Sequence[str]) -> list[FigureSpec]:
    """The --figure regexes if any were given, else the bench's presets."""
    return [FigureSpec.from_regex(regex) for regex in figures] if figures else PRESETS.get(module, GENERIC)


def extract(specs: Sequence[FigureSpec], output: str) -> dict[str, float]:
    """Figure name -> number, in the order the output shows them; a name seen again in this run gets ` #2`, ..."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        for spec in specs:
            match = spec.pattern.search(line.rstrip())
            if match is None or (number := spec.value(match)) is None:
                continue
            name, seen = spec.name(match), 1
            while (name if seen == 1 else f"{name} #{seen}") in found:
                seen += 1
            found[name if seen == 1 else f"{name} #{seen}"] = number
    return found


# ---------------------------------------------------------------------------------------------------------------
# the comparison


@dataclass
class Comparison:
    """One figure's values on each side."""

    name: str
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """B's median over A's (None when A's is 0 or a side has no value)."""
        if not self.a or not self.b or statistics.median(self.a) == 0:
            return None
        return statistics.median(self.b) / statistics.median(self.a)

    @property
    def apart(self) -> bool:
        """True when the two sides' ranges (min-max) do not overlap: a difference larger than this sequence's noise."""
        return bool(self.a and self.b) and (max(self.a) < min(self.b) or max(self.b) < min(self.a))

    def row(self) -> tuple[str, ...]:
        ratio = self.ratio
        verdict = ("apart" if self.apart else "overlap") if self.a and self.b else "one side only"
        return (self.name, values(self.a), values(self.b), median(self.a), median(self.b),
                f"{ratio:.3f}" if ratio is not None else "-", spread(self.a), spread(self.b), verdict)


HEADER = ("figure", "A values", "B values", "A median", "B median", "B/A", "A min-max", "B min-max", "ranges")


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def values(side: list[float]) -> str:
    return " ".join(number(v) for v in side) or "-"


def median(side: list[float]) -> str:
    return number(statistics.median(side)) if side else "-"


def spread(side: list[float]) -> str:
    """min-max, and how wide that is relative to the median."""
    if not side:
        return "-"
    middle = statistics.median(side)
    width = f" ±{(max(side) - min(side)) / 2 / abs(middle):.0%}" if middle else ""
    return f"{number(min(side))}-{number(max(side))}{width}"


def compare(runs: Sequence[tuple[str, dict[str, float]]]) -> list[Comparison]:
    """Each figure any run printed, in first-seen order, with its values per side ("A" or "B") in run order."""
    table: dict[str, Comparison] = {}
    for side, figures in runs:
        for name, value in figures.items():
            getattr(table.setdefault(name, Comparison(name)), side.lower()).append(value)
    return list(table.values())


def format_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [header, tuple("-" * w for w in widths), *rows]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def order(rounds: int, scheme: str) -> list[str]:
    """The sides in run order: abab is A B A B ...; abba is A B B A A B ... (a linear drift cancels per pair of rounds)."""
    pairs = [("A", "B") if scheme == "abab" or n % 2 == 0 else ("B", "A") for n in range(rounds)]
    return [side for pair in pairs for side in pair]


# ---------------------------------------------------------------------------------------------------------------
# the two sides' code


@dataclass(frozen=True)
class Side:
    label: str  # "A" or "B"
    spec: str  # as given: a commit, or "."
    described: str  # the commit's short hash (and "+ working tree")
    checkout: Path
    root: Path  # the import root

    def env(self) -> dict[str, str]:
        return side_env(self.root, self.checkout)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def repo_root(start: Path) -> Path:
    return Path(git(start, "rev-parse", "--show-toplevel"))


def resolve(repo: Path, spec: str) -> str:
    """The commit's full hash; SystemExit naming the spec when git does not know it."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"bench.compare: {spec!r} is not a commit of {repo}") from None


def add_worktree(repo: Path, commit: str, path: Path) -> Path:
    """A detached worktree of `commit` at `path` (remove_worktree removes it)."""
    git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
    return path


def remove_worktree(repo: Path, path: Path) -> None:
    subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], capture_output=True)
    subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


def package_dirs(checkout: Path) -> dict[str, str]:
    """pyproject.toml's [tool.setuptools.package-dir] of this checkout: subpackage -> folder."""
    project = tomllib.loads((checkout / "pyproject.toml").read_text())
    mapping: dict[str, str] = project.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    return mapping


def build_import_root(checkout: Path, root: Path) -> Path:
    """root/pushpipe/: symlinks to checkout/pushpipe/'s files and to each package-dir folder, as .mypy/pushpipe has.

    Only `pushpipe.<name>` entries are linked; a deeper one must be where its parent's folder puts it anyway."""
    package = root / "pushpipe"
    package.mkdir(parents=True)
    for entry in sorted((checkout / "pushpipe").iterdir()):
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in package_dirs(checkout).items():
        parts = name.split(".")
        if parts[0] != "pushpipe" or len(parts) < 2:
            continue
        if len(parts) == 2:
            (package / parts[1]).symlink_to(checkout / folder)
        elif (package.joinpath(*parts[1:])).resolve() != (checkout / folder).resolve():
            raise ValueError(f"package-dir {name} = {folder!r} is not where its parent package puts it")
    return root


def side_env(root: Path, checkout: Path) -> dict[str, str]:
    """Our environment with the side's import root and checkout first on sys.path, and the cwd not on it."""
    return {**os.environ, "PYTHONPATH": f"{root}:{checkout}", "PYTHONSAFEPATH": "1"}


PROBE = "import importlib.util, json, sys; print(json.dumps({n: importlib.util.find_spec(n).origin for n in sys.argv[1:]}))"


def imported_from(side: Side, modules: Sequence[str]) -> dict[str, str]:
    """Module -> the file the side's environment imports it from."""
    done = subprocess.run([sys.executable, "-c", PROBE, *modules], cwd=side.checkout, env=side.env(),
                          capture_output=True, text=True, check=True)
    origins: dict[str, str] = json.loads(done.stdout)
    return origins


def check_imports(side: Side, module: str) -> list[str]:
    """What is imported from outside the side's checkout (empty when all of it is the checkout's code)."""
    names = ["pushpipe", *(n for n in package_dirs(side.checkout) if n.count(".") == 1), module]
    checkout = side.checkout.resolve()
    return [f"{name}: {origin}" for name, origin in imported_from(side, names).items()
            if not Path(origin).resolve().is_relative_to(checkout)]


@contextmanager
def sides(repo: Path, specs: tuple[str, str]) -> Iterator[tuple[Side, Side]]:
    """A and B checked out (or the working tree, for "."), each with its import root; all removed at the end."""
    tmp = Path(tempfile.mkdtemp(prefix="pushpipe-compare-"))
    worktrees: list[Path] = []
    try:
        made = []
        for label, spec in zip("AB", specs, strict=True):
            if spec == WORKING_TREE:
                checkout, described = repo, git(repo, "rev-parse", "--short", "HEAD") + " + working tree"
            else:
                commit = resolve(repo, spec)
                checkout = add_worktree(repo, commit, tmp / label.lower())
                worktrees.append(checkout)
                described = commit[:10]
            made.append(Side(label, spec, described, checkout, build_import_root(checkout, tmp / f"{label.lower()}-root")))
        yield made[0], made[1]
    finally:
        for path in worktrees:
            remove_worktree(repo, path)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# --restart-jobs

RESTART = """\
import sys
from pushpipe.config import load
from pushpipe.infra import stack
settings = load()
for component in reversed(stack.components(settings)):
    module = str(getattr(component, "module", ""))
    if component.name == "supervisor" or component.name.startswith("job-") or module.startswith("pushpipe."):
        print(f"[compare] stop {component.name}", file=sys.stderr, flush=True)
        component.stop(settings)
sys.exit(1 if stack.up(settings) else 0)
"""

SUPERVISOR_PID = "from pushpipe.config import load; from pushpipe.infra import process; print(process.read_pid(load(), 'supervisor') or '')"


@dataclass(frozen=True)
class Launcher:
    """An interpreter and environment to run the stack's restart with, and where."""

    python: str
    env: dict[str, str]
    cwd: Path


def restart_stack(launcher: Launcher) -> None:
    """The supervisor, the jobs and the Python services stopped, then started again by `stack.up` under `launcher`."""
    done = subprocess.run([launcher.python, "-c", RESTART], cwd=launcher.cwd, env=launcher.env)
    if done.returncode:
        raise RuntimeError(f"the stack is not up after restarting it with {launcher.python} (PYTHONPATH={launcher.env.get('PYTHONPATH', '')})")


def running_launcher(cwd: Path) -> Launcher:
    """How the running stack was started: the supervisor's interpreter, PYTHONPATH and cwd (ours if there is none)."""
    pid = subprocess.run([sys.executable, "-c", SUPERVISOR_PID], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    if not pid:
        return Launcher(sys.executable, env, cwd)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))  # not a checkout: `python -c` puts its cwd first on sys.path
    theirs = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item)
    for key in (b"PYTHONPATH", b"PYTHONSAFEPATH"):
        if key in theirs:
            env[key.decode()] = theirs[key].decode()
    return Launcher(argv[0].decode(), env, cwd)


# ---------------------------------------------------------------------------------------------------------------
# running


@dataclass(frozen=True)
class Options:
    a: str
    b: str
    rounds: int
    figures: list[str]
    scheme: str
    restart_jobs: bool
    bench: list[str]  # module and its arguments

    @property
    def module(self) -> str:
        return self.bench[0]


def parse(argv: Sequence[str]) -> Options:
    """`A B [options] -- <bench module> [its arguments]`."""
    if "--" not in argv:
        raise SystemExit("bench.compare: give the benchmark after `--`, e.g. `A B -- bench.ingress --noop`")
    split = list(argv).index("--")
    own, bench = list(argv[:split]), list(argv[split + 1:])
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("a", help="a commit (or `.`: the working tree as it is)")
    parser.add_argument("b", help="the other commit (or `.`); ratios are B/A")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side")
    parser.add_argument("--figure", action="append", default=[], metavar="REGEX",
                        help="a number to read from each line of the output (a capture group; repeatable); replaces the presets")
    parser.add_argument("--order", choices=("abba", "abab"), default="abba", help="the sides' order within the sequence")
    parser.add_argument("--restart-jobs", action="store_true",
                        help="before each run, restart the stack's Flink jobs, Python services and supervisor from that side's code")
    args = parser.parse_args(own)
    if not bench:
        parser.error("no benchmark after `--`")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    module = bench[0].removesuffix(".py").replace("/", ".")
    for regex in args.figure:
        try:
            FigureSpec.from_regex(regex)
        except (re.error, ValueError) as bad:
            parser.error(f"--figure {regex!r}: {bad}")
    return Options(args.a, args.b, args.rounds, args.figure, args.order, args.restart_jobs, [module, *bench[1:]])


def say(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


def run_once(side: Side, bench: Sequence[str]) -> str:
    """One run of the bench with the side's code; its stdout (echoed to stderr as it is captured)."""
    done = subprocess.run([sys.executable, "-m", *bench], cwd=side.checkout, env=side.env(), stdout=subprocess.PIPE, text=True)
    for line in done.stdout.splitlines():
        print(f"  | {line}", file=sys.stderr)
    if done.returncode:
        raise SystemExit(f"bench.compare: {' '.join(bench)} failed at {side.label} ({side.described}) with exit code {done.returncode}")
    return done.stdout


def run_sequence(options: Options, a: Side, b: Side) -> list[tuple[str, dict[str, float]]]:
    specs = specs_for(options.module, options.figures)
    by_label = {"A": a, "B": b}
    runs = []
    sequence = order(options.rounds, options.scheme)
    for n, label in enumerate(sequence, 1):
        side = by_label[label]
        if options.restart_jobs:
            say(f"restarting the stack's jobs and Python services with {label}'s code")
            restart_stack(Launcher(sys.executable, side.env(), side.checkout))
        say(f"run {n}/{len(sequence)}: {label} = {side.spec} ({side.described})")
        figures = extract(specs, run_once(side, options.bench))
        if not figures:
            say(f"no figure found in run {n}'s output (see --figure)")
        runs.append((label, figures))
    return runs


def report(options: Options, a: Side, b: Side, runs: Sequence[tuple[str, dict[str, float]]]) -> str:
    sequence = " ".join(label for label, _ in runs)
    rows = [comparison.row() for comparison in compare(runs)]
    return "\n".join([
        f"bench.compare: {' '.join(options.bench)}, {options.rounds} run(s) per side in one sequence: {sequence}",
        f"  A = {a.spec} ({a.described})", f"  B = {b.spec} ({b.described})",
        f"  the stack's jobs and services: {'restarted with each side' if options.restart_jobs else 'as they run (bench-side code only)'}",
        "", format_table(HEADER, rows) if rows else "no figures",
        "", "B/A: ratio of the medians; ranges `apart`: every B run beyond every A run (min-max), a difference above this sequence's noise."])


def main(argv: Sequence[str] | None = None) -> None:
    options = parse(sys.argv[1:] if argv is None else argv)
    repo = repo_root(Path.cwd())
    launcher = running_launcher(repo) if options.restart_jobs else None
    with sides(repo, (options.a, options.b)) as (a, b):
        for side in (a, b):
            outside = check_imports(side, options.module)
            if outside:
                raise SystemExit(f"bench.compare: {side.label}'s code is not what gets imported:\n  " + "\n  ".join(outside))
            say(f"{side.label} = {side.spec} ({side.described}): pushpipe, its subpackages and {options.module} "
                f"import from {side.checkout} (pushpipe: {imported_from(side, ['pushpipe'])['pushpipe']})")
        try:
            runs = run_sequence(options, a, b)
        finally:
            if launcher is not None:
                say(f"restarting the stack's jobs and Python services as they were ({launcher.python})")
                restart_stack(launcher)
    print(report(options, a, b, runs))


if __name__ == "__main__":
    main()
