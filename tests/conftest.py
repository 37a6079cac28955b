"""Shared pytest fixtures: the sample .rtdc files of tests/data, dask config isolation, a
LocalCluster, dclab's test files; the data they are made of come from ``fixtures.py``."""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

# dask's configuration of the tests: an empty $DASK_CONFIG of their own (importing dask_jobqueue
# writes its default jobqueue.yaml there), and not the user's ~/.config/dask
_DASK_CONFIG = tempfile.mkdtemp(prefix="dcbulk-tests-dask-config-")
os.environ["DASK_CONFIG"] = _DASK_CONFIG
atexit.register(shutil.rmtree, _DASK_CONFIG, True)


def _isolate_dask_config() -> None:
    import dask.config
    user = os.path.join(os.path.expanduser("~"), ".config", "dask")
    dask.config.PATH = _DASK_CONFIG
    dask.config.paths[:] = [p for p in dask.config.paths if os.path.abspath(p) not in (
        os.path.abspath(user), os.path.abspath(_DASK_CONFIG))] + [_DASK_CONFIG]
    dask.config.refresh()


_isolate_dask_config()

# after the isolation: the fixture module imports dcbulk, and so dask, which reads its config
from fixtures import cache_dir, fetch_dclab_test_data, in_ci  # noqa: E402


@pytest.fixture(autouse=True)
def _sigint_handler_kept():
    """Every test leaves Python's SIGINT handler as it found it: a leaked handler (importing
    dask_jobqueue directly installs ``sys.exit()``) made a later Ctrl-C test fail for a
    reason of its own, and hid what dcbulk's own imports do."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, before)
    assert after is before, f"the test replaced the SIGINT handler with {after!r}"


#: The six small real .rtdc files shipped in tests/data (origin: tests/data/README.md).
SAMPLE_NAMES = (
    "M001_data.rtdc",
    "cytoshot-test-data-legacy_dce.rtdc",
    "cytoshot-test-data.rtdc",
    "dcnum_thresh_example.rtdc",
    "file_with_variable_length_logs.rtdc",
    "fmt-hdf5_cytoshot_extended-moments-features.rtdc",
)

#: Where they are: in the repository, so a bare clone tests real files.
SAMPLE_DIR = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The directory of the six sample .rtdc files (tests/data; all must be there)."""
    missing = [name for name in SAMPLE_NAMES if not (SAMPLE_DIR / name).is_file()]
    assert not missing, f"sample files missing from {SAMPLE_DIR}: {missing}"
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def sample_files(shared_data_dir: Path) -> list[Path]:
    """All six sample .rtdc files."""
    return [shared_data_dir / name for name in SAMPLE_NAMES]


@pytest.fixture(params=SAMPLE_NAMES)
def sample_file(request: pytest.FixtureRequest, shared_data_dir: Path) -> Path:
    """Each of the six sample files in turn."""
    return shared_data_dir / request.param


#: how many tests marked ``hostile`` ran in this session (the fault suite's summary line)
_HOSTILE_TRIED = pytest.StashKey[int]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under CI, a skipped ``slurm`` or ``browser`` test fails: a run that did not exercise
    SLURM or a real browser is not green.

    Also counts the ``hostile`` tests that ran (reached their call phase).
    """
    outcome = yield
    report = outcome.get_result()
    if call.when == "call" and item.get_closest_marker("hostile") is not None:
        item.config.stash[_HOSTILE_TRIED] = item.config.stash.get(_HOSTILE_TRIED, 0) + 1
    marker = next((m for m in ("slurm", "browser") if item.get_closest_marker(m) is not None),
                  None)
    if report.skipped and in_ci() and marker is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"CI is set, so this {marker} test must run, but it was skipped: {reason}"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The headless Chromium executable (``browser`` tests skip without it, except in CI)."""
    from dcbulk.monitor.chromium import find_chromium
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run "
                    "installs it)")
    return exe


@pytest.fixture(scope="session")
def hostile_tried(request: pytest.FixtureRequest):
    """A function returning how many ``hostile`` tests have run in this session so far."""
    config = request.config
    return lambda: config.stash.get(_HOSTILE_TRIED, 0)


@pytest.fixture(scope="session")
def client():
    """A real distributed.LocalCluster with 2 single-threaded worker processes."""
    from distributed import Client

    from dcbulk.engine.client import make_local_cluster
    cluster = make_local_cluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    with Client(cluster) as cl:
        yield cl
    cluster.close()


@pytest.fixture(scope="session")
def dclab_test_files(tmp_path_factory) -> dict:
    """A handful of dclab's own test files, from the installed dclab's sdist (cached)."""
    return fetch_dclab_test_data(cache_dir())
