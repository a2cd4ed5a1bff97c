"""A recipe's instructions are shown as paragraphs the screen wraps, not as the file's lines."""

from __future__ import annotations

from hmi.screens.batch_run import reflow


def test_lines_of_a_paragraph_are_joined() -> None:
    text = """
Weigh on the bench scale (the bin load cell does not resolve 0.9 kg at 180 kg), screen through
a 500 µm sieve and spread over the granulate."""
    assert reflow(text) == (
        "Weigh on the bench scale (the bin load cell does not resolve 0.9 kg at 180 kg), "
        "screen through a 500 µm sieve and spread over the granulate."
    )


def test_paragraphs_and_list_items_keep_their_lines() -> None:
    text = "Before you start:\n- wear a mask\n- check the\n  sieve\n\n1. weigh\n2) charge"
    assert reflow(text) == (
        "Before you start:\n- wear a mask\n- check the sieve\n\n1. weigh\n2) charge"
    )
