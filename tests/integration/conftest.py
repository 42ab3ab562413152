"""Fixtures for integration tests: wahub as separate processes.

procs                 a ``multiprocess.Processes`` logging into tmp_path; every process
                      still running is killed after the test, and a failing test's report
                      ends with each log's tail
db_url                an empty database for processes to migrate and share, once on
                      SQLite (a file in tmp_path) and once on PostgreSQL
restartable_postgres  a PostgreSQL cluster of the test module's own, for tests that stop
                      and start the server (the session's ``postgres`` is shared, so no
                      test stops it); skipped like ``postgres`` when there is no server
(``http`` and ``start_sandbox`` are in tests/conftest.py: the contract suite uses them too)
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from multiprocess import Processes
from pgcluster import PostgresCluster, find_bindir
from wahub.domain.ids import new_id


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.kill_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresCluster | None
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'w.db'}"
        return
    if postgres is None:
        pytest.skip("no PostgreSQL server on this machine")
    name = "p_" + new_id("db").split("_", 1)[1]
    url = postgres.new_database(name)
    try:
        yield url
    finally:
        postgres.drop_database(name)


@pytest.fixture(scope="module")
def restartable_postgres() -> Iterator[PostgresCluster]:
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("WAHUB_TEST_POSTGRES") == "required":
            pytest.fail("PostgreSQL is required (WAHUB_TEST_POSTGRES=required) but not installed")
        pytest.skip("no PostgreSQL server on this machine (install Debian's postgresql)")
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    processes = getattr(item, "funcargs", {}).get("procs")
    if report.failed and isinstance(processes, Processes):
        report.sections.append(("wahub process logs", processes.log_tails()))
    return report
