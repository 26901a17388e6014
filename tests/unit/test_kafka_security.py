"""Kafka security settings: validated when loaded, used by every librdkafka client and by Faust."""

import json
import ssl

import faust
import pytest

from stream.adapters import kafka
from stream.app.worker import broker_credentials
from stream.cli import main
from stream.config import KafkaSettings, Settings
from stream.errors import ConfigError


def load(**env: str) -> Settings:
    return Settings.load(env={f"STREAM_KAFKA_{k.upper()}": v for k, v in env.items()})


@pytest.mark.parametrize("env, message", [
    ({"security_protocol": "TLS"}, "kafka.security_protocol: 'TLS' is not one of"),
    ({"security_protocol": "SASL_SSL", "sasl_username": "u"}, "set kafka.sasl_username and kafka.sasl_password"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": "p", "sasl_mechanism": "GSSAPI"},
     "kafka.sasl_mechanism: 'GSSAPI' is not one of"),
    ({"security_protocol": "SSL", "ssl_cert_file": "/etc/hostname"}, "give both (mutual TLS) or neither"),
    ({"security_protocol": "SSL", "ssl_ca_file": "/no/such/ca.pem"}, "kafka.ssl_ca_file: no such file"),
])
def test_bad_security_settings_are_refused_when_loaded(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(**env)


def test_every_client_conf_carries_the_security_settings_once_configured():
    k = load(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="stream",
             sasl_password="pw", bootstrap_servers="kafka:9093").kafka
    try:
        kafka.use_security(k)
        conf = kafka.client_conf("kafka:9093", **{"group.id": "g"})
        assert conf.pop("logger") is kafka.RDKAFKA_LOG  # librdkafka's lines through the project's logging
        assert conf == {"bootstrap.servers": "kafka:9093", "security.protocol": "SASL_SSL",
                        "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": "stream", "sasl.password": "pw",
                        "group.id": "g"}
    finally:
        kafka.use_security(KafkaSettings())
    assert kafka.client_conf("x:1") == {"bootstrap.servers": "x:1", "logger": kafka.RDKAFKA_LOG}


def test_faust_gets_sasl_or_tls_credentials_and_none_on_the_embedded_broker():
    sasl = broker_credentials(KafkaSettings(bootstrap_servers="k:9092", security_protocol="SASL_SSL",
                                            sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="p"))
    assert isinstance(sasl, faust.SASLCredentials) and sasl.username == "u" and sasl.password == "p"
    assert sasl.mechanism.value == "SCRAM-SHA-512" and isinstance(sasl.ssl_context, ssl.SSLContext)
    plain = broker_credentials(KafkaSettings(bootstrap_servers="k:9092", security_protocol="SASL_PLAINTEXT",
                                             sasl_username="u", sasl_password="p"))
    assert plain.ssl_context is None  # aiokafka: SASL_PLAINTEXT
    assert isinstance(broker_credentials(KafkaSettings(bootstrap_servers="k:9092", security_protocol="SSL")),
                      faust.SSLCredentials)
    assert broker_credentials(KafkaSettings(security_protocol="SSL")) is None  # embedded stack: PLAINTEXT
    assert broker_credentials(KafkaSettings(bootstrap_servers="k:9092")) is None


def test_stream_config_never_prints_the_sasl_password(capsys, monkeypatch):
    monkeypatch.setenv("STREAM_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("STREAM_KAFKA_SASL_USERNAME", "stream")
    monkeypatch.setenv("STREAM_KAFKA_SASL_PASSWORD", "hunter2-secret")
    try:
        assert main(["config"]) == 0
    finally:
        kafka.use_security(KafkaSettings())
    out = capsys.readouterr().out
    assert "hunter2-secret" not in out and json.loads(out)["kafka"]["sasl_password"] == "<set>"
