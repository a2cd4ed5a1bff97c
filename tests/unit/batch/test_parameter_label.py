"""Recorded parameter keys are shown in words; the stored key does not change."""

from __future__ import annotations

import pytest

from hmi.batch.model import parameter_label


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("result:SW-VALVE", "result of sample SW-VALVE"),
        ("mixing_speed", "mixing speed"),
        ("quantity", "quantity"),
        ("note:x", "note:x"),  # only a sample result has a known prefix
    ],
)
def test_parameter_label(key: str, words: str) -> None:
    assert parameter_label(key) == words
