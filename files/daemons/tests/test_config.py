from __future__ import annotations

from pathlib import Path

import pytest

from isikhnas_daemons.config import AwsSettings, ConfigError, DbSettings, Env, WorkerSettings


def test_worker_settings_defaults_and_overrides() -> None:
    env = Env({"Q": "https://sqs.example/123/q", "ISIKHNAS_BATCH_SIZE": "5", "ISIKHNAS_VISIBILITY_TIMEOUT": "120"})
    settings = WorkerSettings.from_env(env, "Q")
    assert settings.queue == "https://sqs.example/123/q"
    assert settings.batch_size == 5
    assert settings.visibility_timeout == 120
    assert settings.wait_time_seconds == 20


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "Q is required"),
        ({"Q": "q", "ISIKHNAS_BATCH_SIZE": "11"}, "ISIKHNAS_BATCH_SIZE must be between 1 and 10"),
        ({"Q": "q", "ISIKHNAS_WAIT_TIME_SECONDS": "soon"}, "ISIKHNAS_WAIT_TIME_SECONDS must be an integer"),
        ({"Q": "q", "ISIKHNAS_JOB_TIMEOUT_SECONDS": "10"}, "ISIKHNAS_JOB_TIMEOUT_SECONDS must exceed"),
    ],
)
def test_worker_settings_errors_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WorkerSettings.from_env(Env(environ), "Q")


def test_boolean_and_choice() -> None:
    env = Env({"A": "yes", "B": "off", "C": "maybe", "D": "SMTP"})
    assert env.boolean("A", False) is True
    assert env.boolean("B", True) is False
    assert env.boolean("MISSING", True) is True
    with pytest.raises(ConfigError, match="C must be a boolean"):
        env.boolean("C", False)
    assert env.choice("D", "ses", ("ses", "smtp")) == "smtp"


def test_secret_inline_or_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret\n")
    assert Env({"PW": "inline"}).secret("PW") == "inline"
    assert Env({"PW_FILE": str(secret_file)}).secret("PW") == "s3cret"
    assert Env({}).secret("PW") is None
    with pytest.raises(ConfigError, match="either PW or PW_FILE"):
        Env({"PW": "a", "PW_FILE": str(secret_file)}).secret("PW")
    with pytest.raises(ConfigError, match="PW_FILE: cannot read"):
        Env({"PW_FILE": str(tmp_path / "missing")}).secret("PW")
    with pytest.raises(ConfigError, match="PW \\(or PW_FILE\\) is required"):
        Env({}).required_secret("PW")


def test_db_settings(tmp_path: Path) -> None:
    password = tmp_path / "db"
    password.write_text("pw")
    env = Env({"ISIKHNAS_DB_DSN": "host=a,b dbname=x", "ISIKHNAS_DB_PASSWORD_FILE": str(password)})
    settings = DbSettings.from_env(env, "app")
    assert settings.password == "pw"
    assert settings.application_name == "app"
    assert DbSettings.optional_from_env(Env({}), "app") is None


def test_aws_region_fallbacks() -> None:
    assert AwsSettings.from_env(Env({"AWS_REGION": "ap-southeast-3"})).region == "ap-southeast-3"
    assert AwsSettings.from_env(Env({"ISIKHNAS_AWS_REGION": "a", "AWS_REGION": "b"})).region == "a"
    with pytest.raises(ConfigError, match="ISIKHNAS_AWS_ENDPOINT_URL"):
        AwsSettings.from_env(Env({"ISIKHNAS_AWS_ENDPOINT_URL": "localhost:5000"}))
