"""pushpipe: push-notification delivery on Kafka and PyFlink.

Its subpackages live in the repository's top-level folders (jobs/, schemas/, connectors/, sinks/, infra/,
simulators/) and are imported as pushpipe.jobs, pushpipe.schemas, ...: a wheel puts them inside this package
(pyproject.toml's package-dir); in a checkout they are found beside it, through this package's path.
"""
from pathlib import Path

_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "jobs" / "__init__.py").is_file() and not (Path(__file__).parent / "jobs").is_dir():
    __path__.append(str(_checkout))  # noqa: F821 (the package's own search path)
