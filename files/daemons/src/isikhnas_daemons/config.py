"""Configuration from environment variables (a systemd ``EnvironmentFile``).

Nothing here reads ``os.environ`` implicitly: callers pass the mapping, so tests build configurations
from plain dicts. Secrets may be given inline (``NAME``) or as a file path (``NAME_FILE``), the latter
fitting systemd credentials (``LoadCredential=`` + ``NAME_FILE=%d/name`` in the unit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Exit status for configuration errors (sysexits EX_CONFIG). The systemd unit should list it in
#: ``RestartPreventExitStatus=`` so a broken environment file does not restart in a loop.
EX_CONFIG = 78

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A missing or invalid environment variable; the message names the variable."""


class Env:
    """Typed, validating accessors over an environment mapping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def optional(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ConfigError(f"{name} is required but not set")
        return value

    def string(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(name, default).lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def secret(self, name: str) -> str | None:
        """``NAME`` inline, or the first line of the file named by ``NAME_FILE``; never both."""
        inline = self.optional(name)
        path = self.optional(f"{name}_FILE")
        if inline is not None and path is not None:
            raise ConfigError(f"set either {name} or {name}_FILE, not both")
        if path is None:
            return inline
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
        value = text.strip("\r\n")
        if not value:
            raise ConfigError(f"{name}_FILE: {path} is empty")
        return value

    def required_secret(self, name: str) -> str:
        value = self.secret(name)
        if value is None:
            raise ConfigError(f"{name} (or {name}_FILE) is required but not set")
        return value


@dataclass(frozen=True)
class AwsSettings:
    region: str | None
    endpoint_url: str | None

    @classmethod
    def from_env(cls, env: Env) -> AwsSettings:
        region = env.optional("ISIKHNAS_AWS_REGION") or env.optional("AWS_REGION") or env.optional("AWS_DEFAULT_REGION")
        endpoint = env.optional("ISIKHNAS_AWS_ENDPOINT_URL")
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"ISIKHNAS_AWS_ENDPOINT_URL must be an http(s) URL, got {endpoint!r}")
        return cls(region=region, endpoint_url=endpoint)


@dataclass(frozen=True)
class WorkerSettings:
    """The SQS loop's tuning; ``queue`` is a queue URL or a queue name resolved at start."""

    queue: str
    wait_time_seconds: int = 20
    batch_size: int = 10
    visibility_timeout: int = 60
    max_receives: int = 5
    retry_base_seconds: float = 5.0
    retry_max_seconds: int = 300
    job_timeout_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Env, queue_variable: str) -> WorkerSettings:
        settings = cls(
            queue=env.required(queue_variable),
            wait_time_seconds=env.integer("ISIKHNAS_WAIT_TIME_SECONDS", 20, minimum=0, maximum=20),
            batch_size=env.integer("ISIKHNAS_BATCH_SIZE", 10, minimum=1, maximum=10),
            visibility_timeout=env.integer("ISIKHNAS_VISIBILITY_TIMEOUT", 60, minimum=2, maximum=43200),
            max_receives=env.integer("ISIKHNAS_MAX_RECEIVES", 5, minimum=1, maximum=1000),
            retry_base_seconds=env.number("ISIKHNAS_RETRY_BASE_SECONDS", 5.0, minimum=0, maximum=3600),
            retry_max_seconds=env.integer("ISIKHNAS_RETRY_MAX_SECONDS", 300, minimum=0, maximum=43200),
            job_timeout_seconds=env.number("ISIKHNAS_JOB_TIMEOUT_SECONDS", 300.0, minimum=1, maximum=86400),
        )
        if settings.job_timeout_seconds <= settings.wait_time_seconds + 5:
            raise ConfigError(
                "ISIKHNAS_JOB_TIMEOUT_SECONDS must exceed ISIKHNAS_WAIT_TIME_SECONDS + 5 "
                "(a long poll must not look like a stalled job)"
            )
        return settings


@dataclass(frozen=True)
class DbSettings:
    """libpq connection string, multi-host for failover, e.g.
    ``host=db1,db2 port=5432,5432 dbname=isikhnas user=pipeline target_session_attrs=read-write``."""

    dsn: str
    password: str | None = None
    connect_timeout: int = 5
    application_name: str = "isikhnas-daemon"

    @classmethod
    def from_env(cls, env: Env, application_name: str) -> DbSettings:
        return cls(
            dsn=env.required("ISIKHNAS_DB_DSN"),
            password=env.secret("ISIKHNAS_DB_PASSWORD"),
            connect_timeout=env.integer("ISIKHNAS_DB_CONNECT_TIMEOUT", 5, minimum=1, maximum=300),
            application_name=application_name,
        )

    @classmethod
    def optional_from_env(cls, env: Env, application_name: str) -> DbSettings | None:
        if env.optional("ISIKHNAS_DB_DSN") is None:
            return None
        return cls.from_env(env, application_name)
