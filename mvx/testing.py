"""mvx in a project's own tests: the pytest plugin (registered as `mvx` under the `pytest11` entry
point, so installing mvx is enough) and `assert_no_divergence`.

- `mvx_run`: a fixture (pytest-trio) that is a factory over `mvx.open_run`:
  `run = await mvx_run(leader, followers, **options)`. Its runs belong to the fixture, not to the
  test's task: each is stopped and reaped at teardown, also after a failing test.
- `--mvx-mode hybrid,ptrace` (or `all`) runs every test that uses `mvx_run` under each mode given
  (default: hybrid); `@pytest.mark.mvx_modes("ptrace", ...)` does it for one test. The mode is the
  `mvx_mode` fixture, which `mvx_run` passes to every run unless the test says `mode=`.

docs/harness.md walks through a complete example."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from mvx.api import MODES, Run, open_run


def assert_no_divergence(run: Run) -> None:
    """Fail with the divergence report(s), as mvx prints them, if the variants parted ways."""
    __tracebackhide__ = True
    if run.divergences:
        blocks = "\n\n".join(d.report() for d in run.divergences)
        raise AssertionError(f"the variants diverged ({len(run.divergences)}):\n{blocks}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("mvx").addoption(
        "--mvx-mode", default=None, metavar="MODES",
        help=f"run each test that uses mvx_run under these interception modes: one of {', '.join(MODES)}, "
        "a comma-separated list, or 'all' (default: hybrid)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mvx_modes(*modes): run this test's mvx_run under each of these modes")
    _modes(config.getoption("--mvx-mode"))  # a bad value is a usage error at once, not per test


def _modes(text: str | None) -> list[str]:
    if not text:
        return ["hybrid"]
    modes = list(MODES) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise pytest.UsageError(f"--mvx-mode {text!r}: modes are {', '.join(MODES)} or all")
    return modes


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "mvx_mode" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("mvx_modes")
    modes = _modes(",".join(marker.args)) if marker else _modes(metafunc.config.getoption("--mvx-mode"))
    metafunc.parametrize("mvx_mode", modes, ids=modes, scope="function")


@pytest.fixture
def mvx_mode() -> str:
    """The interception mode of this test's runs (parametrized by --mvx-mode or @mvx_modes)."""
    return "hybrid"


async def _hold(leader: Any, followers: Any, options: dict, closing: trio.Event,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with open_run(leader, followers, **options) as run:
        task_status.started(run)
        await closing.wait()


@pytest.fixture
async def mvx_run(mvx_mode: str):
    """A factory: `run = await mvx_run(leader, followers, **options)` (mvx.open_run's arguments)."""
    closing = trio.Event()
    async with trio.open_nursery() as nursery:

        async def start(leader: Any, followers: Any, **options: Any) -> Run:
            options.setdefault("mode", mvx_mode)
            return await nursery.start(_hold, leader, followers, options, closing)

        try:
            yield start
        finally:
            closing.set()  # every run stops (gracefully) and is reaped before the nursery closes
