"""The command line off a terminal: progress as log lines on a piped stderr, JSON log
lines, environment variables for the common options, one-line refusals of bad options
and of a `--resume` that would change the run, and Ctrl-C while Python still imports or
the pool starts: exit 130, no traceback, the resume command on one line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaoslab.cli import main

ROOT = Path(__file__).resolve().parent.parent

SMALL = """\
title: small
profile: k8s-1.32
designs: [nodeport-lb, nodeport-lb-local]
faults: [{kind: pod-kill, target: app-pod}]
sweep:
  lb.interval: [1s, 2s]
trials: 1000
seed: 7
"""


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    p = tmp_path / "small.yaml"
    p.write_text(SMALL)
    return p


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSLAB_")}
    return {**env, "PYTHONPATH": str(ROOT), "COLUMNS": "80", **extra}


def _chaoslab(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, **kw,  # type: ignore[call-overload]
    )  # fmt: skip


def test_progress_is_log_lines_when_stderr_is_a_pipe(experiment: Path, tmp_path: Path) -> None:
    p = _chaoslab("-m", "chaoslab", "run", str(experiment), "--out", str(tmp_path), env=_env())
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    lines = [ln for ln in err.splitlines() if " INFO progress: " in ln]
    assert lines, err
    shape = re.compile(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO progress: (\d+)/4000 trials \(\d+%\), "
        r"\d+ chunks, [\d,]+ trials/s, ETA (\d+s|\d+m\d\ds|\?)$"
    )
    done = [int(shape.match(ln).group(1)) for ln in lines]  # type: ignore[union-attr]
    assert done == sorted(done) and done[-1] == 4000
    assert "run folder:" in out


def test_json_log_lines_go_to_the_log_file(experiment: Path, tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    args = ["--log-format", "json", "--log-file", str(log), "run", str(experiment)]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert all({"ts", "level", "event", "message"} <= r.keys() for r in records)
    events = [r["event"] for r in records]
    assert events[0] == "run.start" and events[-1] == "run.end" and "progress" in events
    last = [r for r in records if r["event"] == "progress"][-1]
    assert last["done"] == last["total"] == 4000 and last["eta_s"] == 0


def test_environment_variables_set_the_common_options(
    experiment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAOSLAB_OUT", str(tmp_path / "from-env"))
    monkeypatch.setenv("CHAOSLAB_TRIALS", "30")
    monkeypatch.setenv("CHAOSLAB_SEED", "11")
    assert main(["run", str(experiment), "-q"]) == 0
    (run_dir,) = (tmp_path / "from-env" / "small").iterdir()
    meta = json.loads((run_dir / "meta.json").read_text())
    assert (meta["trials"], meta["seed"]) == (30, 11)


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        ("CHAOSLAB_WORKERS", "two", "CHAOSLAB_WORKERS=two: Invalid value for '--workers'"),
        ("CHAOSLAB_WORKERS", "0", "CHAOSLAB_WORKERS=0: at least 1"),
        ("CHAOSLAB_SEED", "-4", "CHAOSLAB_SEED=-4: a whole number, 0 or more"),
        ("CHAOSLAB_ENGINE", "quick", "CHAOSLAB_ENGINE=quick: use simpy or fast"),
        ("CHAOSLAB_LOG_FORMAT", "xml", "--log-format xml: use text or json"),
    ],
)
def test_a_bad_value_from_the_environment_names_the_variable(
    experiment: Path,
    var: str,
    value: str,
    words: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(var, value)
    assert main(["run", str(experiment)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--seed", "-1"], "--seed -1: a whole number, 0 or more"),
        (["--executor", "dask", "--scheduler", "not a url"], "not a scheduler address"),
        (["--executor", "dask", "--scheduler", "tcp://host"], "not a scheduler address"),
        (["--out", "{file}"], "is a file; give a folder"),
    ],
)
def test_bad_run_options_are_one_line(
    experiment: Path,
    tmp_path: Path,
    args: list[str],
    words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    args = [x.replace("{file}", str(a_file)) for x in args]
    assert main(["run", str(experiment), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err


def test_schema_into_a_missing_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "--out", str(tmp_path / "no" / "schema.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no folder" in err
    assert not (tmp_path / "no").exists()


@pytest.fixture
def partial_run(experiment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from chaoslab.results import RunWriter

    real_add = RunWriter.add_trials
    calls = {"n": 0}

    def cut(self: RunWriter, df: object, index: int | None = None) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_add(self, df, index)  # type: ignore[arg-type]

    monkeypatch.setattr(RunWriter, "add_trials", cut)
    assert main(["run", str(experiment), "--out", str(tmp_path / "cut"), "-q"]) == 130
    monkeypatch.setattr(RunWriter, "add_trials", real_add)
    (run_dir,) = (tmp_path / "cut" / "small").iterdir()
    return run_dir


def test_resume_refuses_what_would_change_the_run(
    experiment: Path, partial_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    resume = ["run", str(experiment), "--resume", str(partial_run), "-q"]
    edited = experiment.with_name("edited.yaml")
    edited.write_text(SMALL.replace("seed: 7", "seed: 8"))
    for extra, words in (
        (["--trials", "50"], "--trials 50 would change the run (it has 1000)"),
        (["--seed", "3"], "--seed 3 would change the run (it has 7)"),
        (["--set", "lb.timeout=1s"], "--set lb.timeout=1s would change the run"),
        (["--engine", "fast"], "--engine fast would change the run (it has simpy)"),
    ):
        assert main([*resume, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    assert main(["run", str(edited), "--resume", str(partial_run)]) == 2
    assert "differs from the run's copy" in capsys.readouterr().err
    # the run's own values are no change: it resumes
    assert main([*resume, "--trials", "1000", "--seed", "7"]) == 0
    assert json.loads((partial_run / "meta.json").read_text())["status"] == "complete"


def _interrupt_after(p: subprocess.Popen[str], stream: str, marker: str) -> None:
    """Send the process group Ctrl-C (as a terminal would) once ``marker`` appears."""
    pipe = p.stderr if stream == "stderr" else p.stdout
    assert pipe is not None
    for line in pipe:
        if marker in line:
            os.killpg(p.pid, signal.SIGINT)
            return
    pytest.fail(f"{marker!r} never appeared")


def test_ctrl_c_while_importing_exits_130_without_a_traceback(experiment: Path) -> None:
    # -X importtime reports each module as it finishes: typer done = chaoslab.cli is
    # importing the rest of the command line
    p = _chaoslab(
        "-X", "importtime", "-m", "chaoslab", "run", str(experiment), "--out", "/nonexistent",
        env=_env(), start_new_session=True,
    )  # fmt: skip
    _interrupt_after(p, "stderr", " typer.main\n")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_ctrl_c_while_the_pool_starts_exits_130_with_the_resume_command_on_one_line(
    experiment: Path, tmp_path: Path
) -> None:
    p = _chaoslab(
        "-m", "chaoslab", "run", str(experiment), "--workers", "2", "--out", str(tmp_path),
        env=_env(COLUMNS="40"), start_new_session=True,
    )  # fmt: skip
    _interrupt_after(p, "stdout", " -> ")  # the plan line: the pool is starting
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    (line,) = [ln for ln in err.splitlines() if "--resume" in ln]
    (run_dir,) = (tmp_path / "small").iterdir()
    assert line.endswith(f"chaoslab run {experiment} --resume {run_dir})")


def test_progress_lines_come_every_5s_or_tenth_and_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    from chaoslab.cli.logs import Progress, logger

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "level", logging.INFO)
    now = [0.0]
    progress = Progress(1000, clock=lambda: now[0])
    for step in range(100):  # 10 trials a second for 100 s: a tenth every 10 s
        now[0] = step + 1.0
        progress.advance(10)
    fields = [r.fields for r in records if r.event == "progress"]  # type: ignore[attr-defined]
    # every 5 s (50 trials) comes before every tenth (100 trials); the last is the end
    assert [f["done"] for f in fields] == list(range(50, 1001, 50))
    assert fields[-1]["rate"] == 10.0 and fields[-1]["eta_s"] == 0
