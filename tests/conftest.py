"""Suite-wide options. tests/test_arm64.py boots an arm64 guest under qemu-system (TCG, slow): a
plain run keeps only its tests marked `arm64_ci` (the reduced set CI runs); `--arm64-full`
(`just test-arm64`) keeps them all. The others are deselected, never skipped."""

from __future__ import annotations


def pytest_addoption(parser):
    parser.addoption("--arm64-full", action="store_true",
                     help="run every arm64-node test (default: only those marked arm64_ci)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--arm64-full"):
        return
    keep, drop = [], []
    for item in items:
        reduced_out = item.get_closest_marker("arm64") and not item.get_closest_marker("arm64_ci")
        (drop if reduced_out else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
