import pytest

from stream.config import Settings
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
