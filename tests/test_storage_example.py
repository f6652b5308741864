"""The example adapter of docs/storage.md passes the whole conformance kit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from troopauth.testing import StoreContract

PAGE = Path(__file__).resolve().parent.parent / "docs" / "storage.md"


def _example_adapter() -> Any:
    """Run the page's first python block; return its SnapshotStore class."""
    block = re.search(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert block is not None
    namespace: dict[str, Any] = {"__name__": "snapshot_store_example"}
    exec(compile(block.group(1), str(PAGE), "exec"), namespace)  # noqa: S102 (our own docs)
    return namespace["SnapshotStore"]


SnapshotStore = _example_adapter()


class TestSnapshotStore(StoreContract):
    """The documented copy-on-write adapter, as its author would test it."""

    @pytest.fixture
    def store(self) -> Any:
        """A fresh SnapshotStore."""
        return SnapshotStore()
