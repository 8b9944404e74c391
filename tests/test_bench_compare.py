"""bench/compare.py without services: figures read from the benches' output, the medians and ratios, the arguments,
and each side's code imported from its own checkout (a tiny git repository with two commits)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import compare
from bench.compare import Comparison, FigureSpec, extract, specs_for
from bench.cpu import CpuMeter
from pushpipe.infra.stack import format_table

INGRESS_OUTPUT = """\
offered 5,000/s for 3 s over 128 connections to http://127.0.0.1:18975
answered 202: 4,063/s (15,000); others: {'202': 15000} {}
latency ms: p50 398.62  p99 709.38  p999 729.33
CPU send-api: 3.0 s, 201 µs per request
goal 5,000/s with p99 <= 20 ms: NOT met
"""


def cpu_table(spent: dict[str, float], per: int, unit: str) -> str:
    meter = CpuMeter.__new__(CpuMeter)
    meter.spent = spent
    return meter.table(per=per, unit=unit)


def test_the_ingress_preset_reads_throughput_latencies_and_cpu() -> None:
    assert extract(specs_for("bench.ingress", []), INGRESS_OUTPUT) == {
        "answered 202 per s": 4063.0, "latency p50 (ms)": 398.62, "latency p99 (ms)": 709.38, "latency p999 (ms)": 729.33,
        "CPU per request: send-api (µs)": 201.0}


def test_the_e2e_preset_reads_the_figure_table_and_the_cpu_table_as_the_bench_prints_them() -> None:
    figures = format_table(("figure", "value"), [("requests/s produced", "1,234"), ("p99 produce->accept latency", "2,811 ms"),
                                                 ("seconds until ClickHouse shows the counts", "12.5 s")])
    output = f"CPU spent:\n{cpu_table({'job-fanout': 4.0, 'kafka': 1.0}, 2000, 'request')}\n\nbench/e2e.py: 3000 devices\n{figures}\n"
    assert extract(specs_for("bench.e2e", []), output) == {
        "CPU per request: job-fanout (µs)": 2000.0, "CPU per request: kafka (µs)": 500.0, "CPU per request: all components (µs)": 2500.0,
        "requests/s produced": 1234.0, "p99 produce->accept latency (ms)": 2811.0, "seconds until ClickHouse shows the counts (s)": 12.5}


def test_a_figure_printed_again_in_one_run_is_numbered() -> None:
    twice = "\n".join([cpu_table({"job-dispatch": 1.0}, 1000, "token"), cpu_table({"job-dispatch": 3.0}, 1000, "token")])
    found = extract(specs_for("bench.broadcast", []), twice)
    assert found["CPU per token: job-dispatch (µs)"] == 1000.0
    assert found["CPU per token: job-dispatch (µs) #2"] == 3000.0


def test_figure_regexes_are_named_after_their_group_or_themselves() -> None:
    named, unnamed = FigureSpec.from_regex(r"p99 (?P<p99_ms>[\d.]+)"), FigureSpec.from_regex(r"p50 ([\d.]+)")
    labelled = FigureSpec.from_regex(r"^CPU (?P<label>\S+): [\d.]+ s, (?P<value>[\d,]+) µs")
    labelled_unnamed = FigureSpec.from_regex(r"^CPU (?P<label>\S+): ([\d.]+) s")
    assert extract([named, unnamed, labelled, labelled_unnamed], INGRESS_OUTPUT) == {
        "p99_ms": 709.38, r"p50 ([\d.]+)": 398.62, "send-api": 201.0, "send-api #2": 3.0}
    with pytest.raises(ValueError):
        FigureSpec.from_regex("p99")


def test_an_unknown_module_gets_the_generic_table_rows() -> None:
    assert extract(specs_for("bench.other", []), "figure  value\n------  -----\nthings done  1,500 /s\napp  bench-x\n") == {
        "things done (/s)": 1500.0}


def test_medians_ratio_and_whether_the_ranges_are_apart() -> None:
    faster = Comparison("x", a=[100.0, 120.0, 110.0], b=[130.0, 150.0, 140.0])
    assert faster.ratio == pytest.approx(140 / 110)
    assert faster.apart
    row = dict(zip(compare.HEADER, faster.row(), strict=True))
    assert row["A median"] == "110" and row["B/A"] == "1.273" and row["A min-max"] == "100-120 ±9%" and row["ranges"] == "apart"
    assert not Comparison("y", a=[100.0, 140.0], b=[120.0, 150.0]).apart
    assert Comparison("z", a=[0.0], b=[1.0]).ratio is None
    assert Comparison("w", a=[1.0]).row()[-1] == "one side only"


def test_runs_are_grouped_by_figure_and_side_in_order() -> None:
    runs = [("A", {"f": 1.0}), ("B", {"f": 2.0, "g": 5.0}), ("B", {"f": 3.0}), ("A", {"f": 4.0})]
    [f, g] = compare.compare(runs)
    assert (f.name, f.a, f.b) == ("f", [1.0, 4.0], [2.0, 3.0])
    assert (g.name, g.a, g.b) == ("g", [], [5.0])


def test_the_order_alternates_the_sides() -> None:
    assert compare.order(3, "abba") == ["A", "B", "B", "A", "A", "B"]
    assert compare.order(2, "abab") == ["A", "B", "A", "B"]


def test_arguments_split_at_the_double_dash() -> None:
    options = compare.parse(["main~3", "HEAD", "--rounds", "2", "--figure", r"p99 ([\d.]+)", "--restart-jobs",
                             "--", "bench/ingress.py", "--noop", "--rounds", "5"])
    assert (options.a, options.b, options.rounds, options.figures, options.scheme, options.restart_jobs) == (
        "main~3", "HEAD", 2, [r"p99 ([\d.]+)"], "abba", True)
    assert options.bench == ["bench.ingress", "--noop", "--rounds", "5"]  # the bench's own arguments left alone
    for bad in (["A", "B", "bench.ingress"], ["A", "B", "--"], ["A", "B", "--figure", "no group", "--", "bench.x"],
                ["A", "B", "--rounds", "0", "--", "bench.x"]):
        with pytest.raises(SystemExit):
            compare.parse(bad)


def test_the_restart_code_compiles() -> None:
    compile(compare.RESTART, "<restart>", "exec")


# -- each side's code, from a tiny repository with two commits --------------------------------------------------------

SPEED = "from pushpipe.things import SPEED\nprint(f'speed: {SPEED} ops/s')\n"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True, capture_output=True)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """pushpipe/ with pushpipe.things in things/ (package-dir), and bench.speed; commit 1 says 10 ops/s, commit 2 20."""
    repo = tmp_path / "tiny"
    for folder in ("pushpipe", "things", "bench"):
        (repo / folder).mkdir(parents=True)
        (repo / folder / "__init__.py").write_text("")
    (repo / "pyproject.toml").write_text('[tool.setuptools.package-dir]\n"pushpipe.things" = "things"\n')
    git(repo, "init", "-q")
    for speed in (10, 20):
        (repo / "things" / "__init__.py").write_text(f"SPEED = {speed}\n")
        (repo / "bench" / "speed.py").write_text(SPEED)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"speed {speed}")
    return repo


def test_each_side_imports_its_own_checkout_ahead_of_the_editable_install(tiny: Path) -> None:
    with compare.sides(tiny, ("HEAD~1", "HEAD")) as (a, b):
        for side, speed in ((a, "10"), (b, "20")):
            assert compare.check_imports(side, "bench.speed") == []
            origins = compare.imported_from(side, ["pushpipe", "pushpipe.things", "bench.speed"])
            assert all(Path(origin).resolve().is_relative_to(side.checkout.resolve()) for origin in origins.values()), origins
            assert Path(origins["pushpipe"]).parent == side.root / "pushpipe"  # the import root's, not this venv's pushpipe
            said = subprocess.run([sys.executable, "-m", "bench.speed"], cwd=side.checkout, env=side.env(),
                                  capture_output=True, text=True, check=True).stdout
            assert said == f"speed: {speed} ops/s\n"
        checkouts = [a.checkout, b.checkout]
    assert not any(path.exists() for path in checkouts)  # the worktrees are gone
    listed = subprocess.run(["git", "-C", str(tiny), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(listed.splitlines()) == 1


def test_the_working_tree_side_uses_the_files_as_they_are(tiny: Path) -> None:
    (tiny / "things" / "__init__.py").write_text("SPEED = 30\n")  # not committed
    with compare.sides(tiny, (".", "HEAD")) as (a, b):
        assert a.checkout == tiny and a.described.endswith("+ working tree")
        said = subprocess.run([sys.executable, "-m", "bench.speed"], cwd=a.checkout, env=a.env(), capture_output=True, text=True).stdout
        assert said == "speed: 30 ops/s\n"
    assert (tiny / "things" / "__init__.py").exists()


def test_a_whole_comparison_prints_the_ratio(tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tiny)
    compare.main(["HEAD~1", "HEAD", "--rounds", "2", "--figure", r"speed: (?P<speed>\d+)", "--", "bench.speed"])
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if line.startswith("speed ")]
    assert row.split() == ["speed", "10", "10", "20", "20", "10", "20", "2.000", "10-10", "±0%", "20-20", "±0%", "apart"]
    assert "A B B A" in out
