"""`cli-trading optimize`: the walk-forward from the command line (table, --json, clear errors)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli_trading.cli import app

SMALL = ["--to", "2019-05-01", "--windows", "2", "--param", "fast=5,20", "--param", "slow=26,50"]


def run(*args: str) -> object:
    return CliRunner().invoke(app, ["optimize", *args], catch_exceptions=False)


def test_json_has_windows_and_proposals() -> None:
    res = run(*SMALL, "--json", "--workers", "2")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    doc = json.loads(res.stdout)  # type: ignore[attr-defined]
    assert (doc["strategy"], doc["symbol"], doc["method"], doc["evaluated"]) == ("trend", "BTC-USD", "grid", 5)
    assert [w["window"] for w in doc["windows"]] == [1, 2]
    assert doc["windows"][0]["testDates"][0] > doc["windows"][0]["trainDates"][1]
    for p in doc["proposals"]:
        assert p["outOfSample"]["score"] > p["currentOutOfSample"]["score"]


def test_the_table_for_people() -> None:
    res = run(*SMALL, "--workers", "1")
    text = res.output  # type: ignore[attr-defined]
    assert res.exit_code == 0, text  # type: ignore[attr-defined]
    assert "walk-forward: trend on BTC-USD" in text and "out of sample" in text


def test_optuna_from_the_command_line() -> None:
    args = ["--to", "2019-05-01", "--windows", "2", "--method", "optuna", "--trials", "4", "--json", "--workers", "1"]
    res = run(*args, "--param", "fast=3:20", "--param", "slow=21:60")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    assert json.loads(res.stdout)["method"] == "optuna"  # type: ignore[attr-defined]


def test_clear_errors(tmp_path: Path) -> None:
    cases = {
        ("--param", "fast"): "name=",
        ("--param", "fsat=1,2"): "no parameter fsat",
        ("--symbol", "DOGE-USD"): "no market data for 'DOGE-USD'",
        ("--method", "annealing"): "grid or optuna",
        ("--strategy", "momentum"): "momentum",
        ("--to", "2019-03-24"): "too few",
        ("--config", str(tmp_path / "nope")): "",
    }
    for args, message in cases.items():
        res = run(*args)
        if args[0] == "--config":  # an empty folder: the shipped files are used
            assert res.exit_code in (0, 2)  # type: ignore[attr-defined]
            continue
        assert res.exit_code == 2 and message in res.output, (args, res.output)  # type: ignore[attr-defined]
