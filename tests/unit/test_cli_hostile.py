"""Every command, given hostile values, ends with one ``error:`` line and a non-zero exit: never a
traceback, never a run with nonsense. No broker or Redis runs here: each value must be refused
before anything connects (a case that got through would fail on "no broker" instead)."""

from __future__ import annotations

import os
import argparse

import pytest

from stream import cli

#: (argv, environment, exit code, a fragment of the last stderr line)
CASES = [
    (["produce", "--users", "0"], {}, 2, "argument --users: must be an integer >= 1, got 0"),
    (["produce", "--users=-3"], {}, 2, "argument --users: must be an integer >= 1"),
    (["produce", "--rate", "0"], {}, 2, "argument --rate: must be within (0, inf)"),
    (["produce", "--events=-5"], {}, 2, "argument --events"),
    (["produce", "--malformed", "2"], {}, 2, "argument --malformed: must be within [0, 1]"),
    (["produce", "--batch-size=-1"], {}, 2, "argument --batch-size"),
    (["produce", "--target-rate=-10"], {}, 2, "argument --target-rate"),
    (["produce", "--events", "40000000", "--rate", "1"], {}, 1, "more than ingest accepts"),
    (["up", "--broker-port=-1"], {}, 2, "argument --broker-port: must be a TCP port"),
    (["up", "--broker-port", "70000"], {}, 2, "argument --broker-port: must be a TCP port"),
    (["up", "--redis-port", "http"], {}, 2, "argument --redis-port: not a port number"),
    (["drift", "calibrate", "--target-run-windows", "0"], {}, 2, "argument --target-run-windows"),
    (["drift", "calibrate", "--target-run-windows=-5"], {}, 2, "argument --target-run-windows"),
    (["drift", "calibrate", "--min-windows", "0"], {}, 2, "argument --min-windows"),
    (["drift", "calibrate", "--out", "{tmp}/missing/t.yaml"], {}, 2, "does not exist"),
    (["drift", "calibrate", "--out", "{tmp}"], {}, 2, "is a folder, not a file"),
    (["tail", "clicks.v1", "--max=-1"], {}, 2, "argument --max"),
    (["tail", "clicks.v1", "--max", "0"], {}, 2, "argument --max"),
    (["tail", "clicks.v1", "--idle-timeout=-1"], {}, 2, "argument --idle-timeout"),
    (["worker", "--stages", ""], {}, 2, "argument --stages: no stage named"),
    (["worker", "--stages", "ingest,bogus"], {}, 2, "unknown stage(s) bogus"),
    (["worker", "--stages", "score,score"], {}, 2, "a stage named twice"),
    (["worker", "--web-port", "99999"], {}, 2, "argument --web-port"),
    (["dashboard", "--port", "70000"], {}, 2, "argument --port: must be a TCP port"),
    (["dashboard", "--refresh", "0"], {}, 2, "argument --refresh: must be within [0.2, 60]"),
    (["dashboard", "--since=-1"], {}, 2, "argument --since"),
    (["dashboard"], {}, 1, "no broker: run `stream up`"),
    (["dashboard"], {"STREAM_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, 1, "no Kafka broker answers at 127.0.0.1:1"),
    (["--log-level", "loud", "config"], {}, 2, "argument --log-level: must be one of"),
    (["demo", "--seconds=-1"], {}, 2, "argument --seconds"),
    (["demo", "--seconds", "0"], {}, 2, "argument --seconds"),
    (["demo", "--users", "0"], {}, 2, "argument --users"),
    (["demo", "--warmup-events=-1"], {}, 2, "argument --warmup-events"),
    (["replay", "{csv}", "--limit", "0"], {}, 2, "argument --limit"),
    (["replay", "{csv}", "--periods", "0"], {}, 2, "argument --periods"),
    (["replay", "{csv}", "--workers", "0"], {}, 2, "argument --workers"),
    (["replay", "{csv}", "--json", "{tmp}/missing/r.json"], {}, 2, "does not exist"),
    (["replay", "{tmp}/none.csv"], {}, 1, "cannot read"),
    (["replay", "{bad_csv}", "--in-process"], {}, 1, "bad.csv:3:"),
    (["model", "rollback", "--timeout", "0"], {}, 2, "argument --timeout: must be within (0, 3600]"),
    (["model", "rollback", "--timeout", "abc"], {}, 2, "argument --timeout: not a number"),
    (["model", "canary", "1", "--steps", "0.5,abc"], {}, 2, "argument --steps: steps must be numbers"),
    (["model", "canary", "1", "--steps", "0.5,0.2"], {}, 2, "argument --steps: steps must be"),
    (["model", "canary", "1", "--steps", "1.5"], {}, 2, "argument --steps: steps must be"),
    (["model", "shadow", "x"], {}, 2, "argument version: not an integer"),
    (["model", "show", "-1"], {}, 2, "error:"),
    (["config"], {"STREAM_REDIS_URL": "notaurl"}, 1, "setting redis.url: 'notaurl' is not a Redis URL"),
    (["config"], {"STREAM_KAFKA_BOOTSTRAP_SERVERS": "broker"}, 1, "is not HOST:PORT"),
    (["config"], {"STREAM_FAUST_PROCESSING_GUARANTEE": "bogus"}, 1, "setting faust.processing_guarantee"),
    (["config"], {"STREAM_FAUST_WEB_PORT": "99999"}, 1, "setting faust.web_port"),
    (["config"], {"STREAM_MODEL_K": "abc"}, 1, "setting model.k"),
    (["config"], {"STREAM_DRIFT_WINDOW_S": "-1"}, 1, "setting drift.window_s"),
    (["config"], {"STREAM_MODEL_EXPLORE": "2"}, 1, "setting model.explore"),
    (["config"], {"STREAM_INGEST_MAX_SKEW_S": "-5"}, 1, "setting ingest.max_skew_s: -5 must be a finite number >= 0"),
    (["up"], {"STREAM_STACK_STATE_DIR": "/proc/no-such-folder"}, 1, "stack state folder /proc/no-such-folder"),
]


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    import os
    for name in [n for n in os.environ if n.startswith("STREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STREAM_STACK_STATE_DIR", str(tmp_path / "state"))  # no stack runs there
    (tmp_path / "log.csv").write_text("user,item,timestamp\nu1,i1,1000\nu1,i2,1001\n")
    (tmp_path / "bad.csv").write_text("user,item,timestamp\nu1,i1,1000\nu1,i2,yesterday\n")

    def run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        argv = [a.format(tmp=tmp_path, csv=tmp_path / "log.csv", bad_csv=tmp_path / "bad.csv") for a in argv]
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's own exit
            code = exc.code
        return code, capsys.readouterr().err
    return run


@pytest.mark.parametrize("argv,env,code,fragment", CASES, ids=[" ".join(c[0]) + str(c[1]) for c in CASES])
def test_a_hostile_value_is_one_error_line_and_a_non_zero_exit(run, argv, env, code, fragment):
    got, err = run(argv, env)
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert got == code, err
    assert lines and "error:" in lines[-1] and fragment in lines[-1], err


def _actions(parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()):
    """(subcommand path, action) for every argument of every command, and (path, None) per command."""
    for action in (parser or cli.build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), None
                yield from _actions(sub, path + (name,))
        else:
            yield path, action


def _numeric_options() -> list[tuple[list[str], str]]:
    """(subcommand path, option) for every option of every subcommand that takes a number."""
    return [(list(path), a.option_strings[-1]) for path, a in _actions()
            if a is not None and a.option_strings and getattr(a.type, "__name__", "") in ("integer", "number", "port")]


def test_no_option_parses_a_number_without_bounds():
    """New options cannot slip in as a bare int or float (those accept -5, nan and inf)."""
    bare = [" ".join(path + ((a.option_strings or [a.dest])[-1],)) for path, a in _actions()
            if a is not None and a.type in (int, float)]
    assert not bare, f"bare int/float arguments: {bare}"
    assert len(_numeric_options()) >= 25  # the walk below does reach the commands


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "1e400", ""])
def test_every_numeric_option_of_every_command_refuses_garbage(run, value):
    for path, option in _numeric_options():
        got, err = run(path + [f"{option}={value}"], {})
        assert got == 2 and "Traceback" not in err, (path, option, err)
        assert f"argument {option}" in err.strip().splitlines()[-1], (path, option, err)


def test_every_command_has_help():
    commands = [list(path) for path, a in _actions() if a is None]
    assert len(commands) >= 20
    for path in commands:
        with pytest.raises(SystemExit) as exc:
            cli.main(path + ["--help"])
        assert exc.value.code == 0, path


@pytest.mark.parametrize("argv", [["topics", "list"], ["tail", "clicks.v1", "--max", "1"]])
def test_an_unreachable_broker_is_a_few_log_lines_and_one_error_not_a_flood(argv, tmp_path):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_")}
    env.update(STREAM_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", STREAM_STACK_STATE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "stream.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and lines[-1].startswith("stream: error: ")
    # librdkafka's connection failures (~190 lines before) come through the logfmt handler, a few per minute
    assert len(lines) <= 6 and all(line.startswith("ts=") and "logger=rdkafka" in line for line in lines[:-1]), lines
