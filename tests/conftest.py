"""
Markers applied by where a test lives: everything under tests/system/ runs
a subprocess, a real HAProxy or systemd, or builds the package, and is
C{slow}; C{pytest -m "not slow"} is the quick inner loop.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_SYSTEM = Path(__file__).parent / "system"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SYSTEM in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)
