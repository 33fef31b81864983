"""One error model at the command line: a chaoslab error is one plain line and its exit
status (UserError 2, LiveError 1); anything else is a bug and keeps its traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from chaoslab.cli import main
from chaoslab.cli.common import user_errors
from chaoslab.errors import LiveError, UserError
from chaoslab.faults import ImpossibleFault
from chaoslab.params import ParseError, UnknownParameter


def _raising(exc: BaseException) -> typer.Exit:
    @user_errors
    def command() -> None:
        raise exc

    with pytest.raises(typer.Exit) as done:
        command()
    return done.value


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UserError("bad.yaml:3: trials: must be positive"), 2),
        (UnknownParameter("unknown parameter 'lb.intervl'"), 2),
        (ParseError("'3' has no unit"), 2),
        (ImpossibleFault("clusterip runs no keepalived"), 2),
        (LiveError("the cluster refused the eviction"), 1),
    ],
)
def test_a_chaoslab_error_is_one_line_and_its_exit_status(
    exc: Exception, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _raising(exc).exit_code == code
    assert capsys.readouterr().err == f"error: {exc}\n"


def test_the_line_is_text_not_rich_markup(capsys: pytest.CaptureFixture[str]) -> None:
    _raising(UserError("source: [assumption] [bold]not bold[/bold]"))
    assert capsys.readouterr().err == "error: source: [assumption] [bold]not bold[/bold]\n"


def test_a_bug_is_not_hidden() -> None:
    @user_errors
    def command() -> None:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        command()


def test_unknown_parameter_is_still_a_key_error_and_prints_unquoted() -> None:
    e = UnknownParameter("unknown parameter 'x'")
    assert isinstance(e, KeyError) and str(e) == "unknown parameter 'x'"


def test_main_maps_a_bad_run_folder_to_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(tmp_path) in err
