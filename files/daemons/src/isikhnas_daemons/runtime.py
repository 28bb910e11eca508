"""What every daemon's ``main`` shares: logging, configuration errors, signals, AWS clients, the run."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from isikhnas_daemons import logs
from isikhnas_daemons.config import EX_CONFIG, AwsSettings, ConfigError, Env
from isikhnas_daemons.sdnotify import Notifier
from isikhnas_daemons.worker import Worker

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sqs import SQSClient


@dataclass(frozen=True)
class Aws:
    """Clients built once per daemon and passed explicitly to whatever needs them."""

    settings: AwsSettings
    session: boto3.session.Session

    @classmethod
    def create(cls, settings: AwsSettings) -> Aws:
        return cls(settings=settings, session=boto3.session.Session(region_name=settings.region))

    def _config(self, read_timeout: int, signature_version: str | None = None) -> Config:
        return Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            read_timeout=read_timeout,  # must exceed the long-poll wait
            user_agent_extra="isikhnas-daemons",
            signature_version=signature_version,
        )

    def sqs(self, read_timeout: int = 40) -> SQSClient:
        return self.session.client("sqs", endpoint_url=self.settings.endpoint_url, config=self._config(read_timeout))

    def s3(self) -> S3Client:
        # SigV4 for presigned links (SigV2 is deprecated and not accepted in newer regions).
        config = self._config(60, signature_version="s3v4")
        return self.session.client("s3", endpoint_url=self.settings.endpoint_url, config=config)

    def ses(self) -> SESClient:
        return self.session.client("ses", endpoint_url=self.settings.endpoint_url, config=self._config(60))


@dataclass
class App:
    """A built daemon: its worker loop and what to close afterwards."""

    worker: Worker
    closers: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class Context:
    env: Env
    log: logging.Logger
    aws: Aws
    notifier: Notifier
    stop: threading.Event


Builder = Callable[[Context], App]


def install_signal_handlers(stop: threading.Event, log: logging.Logger) -> None:
    """SIGTERM (systemd stop) and SIGINT request a graceful drain; must run in the main thread."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info("signal received; draining", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def run(daemon: str, build: Builder, environ: Mapping[str, str] | None = None) -> int:
    """Configure, build and run one daemon; the return value is the process exit status."""
    environ = os.environ if environ is None else environ
    env = Env(environ)
    level, level_error = logs.level_from(env)
    log = logs.setup(daemon, level)
    stop = threading.Event()
    install_signal_handlers(stop, log)
    notifier = Notifier(environ)
    try:
        if level_error is not None:
            raise level_error
        context = Context(env=env, log=log, aws=Aws.create(AwsSettings.from_env(env)), notifier=notifier, stop=stop)
        app = build(context)
    except ConfigError as exc:
        log.error("configuration error", extra={"error": str(exc)})
        return EX_CONFIG
    except Exception as exc:
        log.exception("start-up failed", extra={"error": repr(exc)})
        return 1
    try:
        return app.worker.run()
    except Exception as exc:
        log.exception("daemon crashed", extra={"error": repr(exc)})
        return 1
    finally:
        for close in reversed(app.closers):
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the real outcome
                log.warning("close failed", extra={"error": repr(exc)})
