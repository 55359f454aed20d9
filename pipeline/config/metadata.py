"""Where ML Metadata lives: SQLite under the pipeline root (default) or a MySQL-compatible server.

The password of the MySQL user is read from an environment variable (its name is a setting), never from code or
files: configs are saved next to the outputs as JSON and must hold nothing secret. Once read, it is masked in every
log record of the process: TFX's LocalDagRunner logs the whole connection config at INFO ("Using connection
config"), which `-v` shows.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket

from ml_metadata.proto import metadata_store_pb2

from pipeline.config.errors import ConfigError

BACKENDS = ("sqlite", "mysql")


@dataclasses.dataclass(frozen=True)
class MetadataConfig:
    """The metadata store of local runs (Kubeflow and Vertex bring their own). `--set metadata_backend=mysql
    --set metadata_host=db.internal` reaches these fields."""

    backend: str = "sqlite"  # sqlite: <pipeline root>/metadata.sqlite; mysql: the server below
    host: str = "127.0.0.1"
    port: int = 3306
    database: str = "mlmd"  # created on first use when the user may do so
    user: str = "mlmd"
    password_env: str = "TOKENLEARNER_MLMD_PASSWORD"  # name of the environment variable holding the password
    connect_timeout_s: float = 5.0  # how long the reachability check waits for the server

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"metadata_backend: unknown {self.backend!r}; expected one of {list(BACKENDS)}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"metadata_port: expected 1..65535, got {self.port}")
        if self.backend == "mysql":
            for name in ("host", "database", "user", "password_env"):
                if not getattr(self, name):
                    raise ConfigError(f"metadata_{name}: required by metadata_backend=mysql")


def connection_config(cfg: MetadataConfig, sqlite_path: str) -> metadata_store_pb2.ConnectionConfig:
    """The MLMD connection of this config; for MySQL, the password comes from `cfg.password_env`."""
    connection = metadata_store_pb2.ConnectionConfig()
    if cfg.backend == "sqlite":
        connection.sqlite.filename_uri = sqlite_path
        connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        return connection
    if cfg.password_env not in os.environ:
        raise ConfigError(f"metadata_password_env: environment variable {cfg.password_env} is not set; "
                          f"export it with the password of MySQL user {cfg.user!r}")
    connection.mysql.host = cfg.host
    connection.mysql.port = cfg.port
    connection.mysql.database = cfg.database
    connection.mysql.user = cfg.user
    connection.mysql.password = os.environ[cfg.password_env]
    mask_in_logs(connection.mysql.password)
    return connection


_SECRETS: set[str] = set()


def mask_in_logs(secret: str) -> None:
    """From now on, `secret` reads *** in every log record this process creates, whichever handler writes it."""
    if not secret or secret in _SECRETS:
        return
    _SECRETS.add(secret)
    if len(_SECRETS) > 1:
        return  # the record factory is already installed
    make_record = logging.getLogRecordFactory()

    def masking_factory(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report, as it would have been
            return record
        if any(s in message for s in _SECRETS):
            for s in _SECRETS:
                message = message.replace(s, "***")
            record.msg, record.args = message, ()
        return record

    logging.setLogRecordFactory(masking_factory)


def check_connection(cfg: MetadataConfig, connection: metadata_store_pb2.ConnectionConfig) -> None:
    """Fail early, naming the field, when the store cannot be used: MLMD's own message for an unreachable
    server or a refused login is an empty `mysql_real_connect failed`."""
    if cfg.backend != "mysql":
        return
    try:
        with socket.create_connection((cfg.host, cfg.port), timeout=cfg.connect_timeout_s):
            pass
    except OSError as e:
        raise ConfigError(f"metadata_host/metadata_port: cannot reach the MySQL server at {cfg.host}:{cfg.port} "
                          f"({e.strerror or e})") from None
    import ml_metadata as mlmd

    try:
        mlmd.MetadataStore(connection)
    except RuntimeError as e:
        raise ConfigError(f"metadata_user/metadata_password_env/metadata_database: {cfg.host}:{cfg.port} "
                          f"answers but refused user {cfg.user!r} on database {cfg.database!r} with the password "
                          f"in ${cfg.password_env} ({e})") from None
