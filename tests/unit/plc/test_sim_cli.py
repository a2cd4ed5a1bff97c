"""The plc-sim command line: options are validated before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from plc_sim.__main__ import build_parser, main
from plc_sim.server import SimulatorConfig


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--time-scale", "0"], "time scale must be a positive number"),
        (["--port", "70000"], "port must be 0-65535"),
        (["--tick-interval", "5"], "tick interval"),
        (["--username", ""], "username is required"),
    ],
)
def test_bad_options_stop_with_status_2_and_a_reason(
    argv: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--data-dir", str(tmp_path)]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "pki").exists()  # nothing was created


def test_defaults_match_the_documented_interface(tmp_path: Path) -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.seed, args.time_scale) == ("127.0.0.1", 4840, 0, 1.0)
    assert args.insecure is False and args.username == "hmi"
    config = SimulatorConfig(data_dir=tmp_path)
    assert config.resolved_password_file == tmp_path / "password"
    assert config.pki.certificate == tmp_path / "pki" / "own" / "cert.der"
