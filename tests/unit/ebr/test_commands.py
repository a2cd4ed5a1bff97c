"""The ``hmi ebr`` command and the ``report``/``export`` actions it lends to ``hmi batch``."""

from __future__ import annotations

import argparse
from pathlib import Path

from hmi.commands import ebr


def test_batch_actions_parse_into_their_handlers() -> None:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--data", type=Path)
    parser = argparse.ArgumentParser(prog="hmi batch")
    sub = parser.add_subparsers(dest="batch_command", required=True)
    ebr.add_batch_actions(sub, parent)
    args = parser.parse_args(["report", "b-1", "--pdf", "r.pdf", "--page", "Letter"])
    assert args.handler is ebr.run_report and (args.batch_id, args.page) == ("b-1", "Letter")
    assert ebr._batch_id(args) == "B-1"
    args = parser.parse_args(["export", "B-1", "--out", "b.jsonl"])
    assert args.handler is ebr.run_export and ebr._batch_id(args) == "B-1"


def test_ebr_command_registers_every_action() -> None:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--data", type=Path)
    parser = argparse.ArgumentParser(prog="hmi")
    ebr.register(parser.add_subparsers(dest="command", required=True), parent)
    handlers = {
        action: parser.parse_args(["ebr", *argv]).handler
        for action, argv in {
            "report": ["report", "B-1", "--pdf", "x.pdf"],
            "export": ["export", "B-1", "--out", "x.jsonl"],
            "verify": ["verify", "x.jsonl"],
            "unreviewed": ["unreviewed"],
        }.items()
    }
    assert handlers == {
        "report": ebr.run_report,
        "export": ebr.run_export,
        "verify": ebr.run_verify,
        "unreviewed": ebr.run_unreviewed,
    }
