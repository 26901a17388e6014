import pytest

from stream.config import Settings, production_problems
from stream.errors import ConfigError


def test_defaults_are_for_the_embedded_stack():
    s = Settings.load(env={})
    assert s.faust.processing_guarantee == "at_least_once"
    assert s.faust.broker_session_timeout_s <= 10  # Tansu holds joins for half of it
    assert s.kafka.bootstrap_servers == ""  # empty: taken from `stream up`


def test_file_then_environment_override(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("ingest:\n  max_skew_s: 10\n  event_types: [view, click]\nprofile:\n  last_items: 3\n")
    s = Settings.load(f, env={"STREAM_INGEST_MAX_SKEW_S": "20"})
    assert s.ingest.max_skew_s == 20.0  # environment beats file
    assert s.ingest.event_types == ("view", "click")
    assert s.profile.last_items == 3


def test_config_file_from_environment(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("faust:\n  web_enabled: false\n")
    assert Settings.load(env={"STREAM_CONFIG": str(f)}).faust.web_enabled is False


@pytest.mark.parametrize("env,needle", [
    ({"STREAM_NOPE_X": "1"}, "unknown setting STREAM_NOPE_X"),
    ({"STREAM_INGEST_NOPE": "1"}, "no field 'nope'"),
    ({"STREAM_PROFILE_LAST_ITEMS": "ten"}, "profile.last_items"),
    ({"STREAM_FAUST_WEB_ENABLED": "maybe"}, "not a boolean"),
])
def test_bad_environment_is_a_clear_error(env, needle):
    with pytest.raises(ConfigError, match=needle):
        Settings.load(env=env)


def test_bad_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="cannot read settings file"):
        Settings.load(missing, env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest: [1, 2]\n")
    with pytest.raises(ConfigError, match="must map section names"):
        Settings.load(bad, env={})
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("ingest:\n  max_skw_s: 1\n")
    with pytest.raises(ConfigError, match="unknown setting ingest.max_skw_s"):
        Settings.load(unknown, env={})


def test_replace_coerces_and_keeps_other_sections():
    s = Settings.load(env={}).replace(stack={"broker_port": "1234"})
    assert s.stack.broker_port == 1234
    assert s.ingest == Settings.load(env={}).ingest


@pytest.mark.parametrize("env, message", [
    ({"STREAM_FAUST_PROCESSING_GUARANTEE": "exactly_once"}, "faust.processing_guarantee: 'exactly_once' is not one of"),
    ({"STREAM_FAUST_LOG_LEVEL": "loud"}, "faust.log_level: 'loud' is not one of: debug"),
    ({"STREAM_DEPLOY_MODE": "prod"}, "deploy.mode: 'prod' is not one of: development, production"),
    ({"STREAM_FAUST_WEB_PORT": "99999"}, "faust.web_port: 99999 is outside 0..65535"),
    ({"STREAM_STACK_BROKER_PORT": "-1"}, "stack.broker_port: -1 is outside 0..65535"),
    ({"STREAM_MODEL_K": "0"}, "model.k: 0 is outside 1..1000"),
])
def test_values_outside_their_choices_or_range_are_refused_when_loaded(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.load(env=env)


def test_production_mode_names_every_missing_secret_and_accepts_real_ones():
    prod = {"STREAM_DEPLOY_MODE": "production"}
    problems = production_problems(Settings.load(env=prod))
    assert len(problems) == 2 and "model.hmac_key is the public development key" in problems[0]
    assert "ingest.pseudonymise_key is empty" in problems[1]
    same = {**prod, "STREAM_MODEL_HMAC_KEY": "x" * 40, "STREAM_INGEST_PSEUDONYMISE_KEY": "x" * 40}
    assert production_problems(Settings.load(env=same)) == [
        "ingest.pseudonymise_key and model.hmac_key are the same secret: use two"]
    good = {**prod, "STREAM_MODEL_HMAC_KEY": "h" * 40, "STREAM_INGEST_PSEUDONYMISE_KEY": "p" * 40}
    assert production_problems(Settings.load(env=good)) == []
    assert production_problems(Settings.load(env={})) == []  # development: the embedded stack's defaults


def test_a_production_worker_with_the_development_key_does_not_start():
    from stream.app.worker import build
    from stream.errors import StreamError
    with pytest.raises(StreamError, match="refusing to start in production mode: model.hmac_key"):
        build(Settings.load(env={"STREAM_DEPLOY_MODE": "production"}), ("ingest", "profile"), "w")
