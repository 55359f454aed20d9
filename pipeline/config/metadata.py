"""Where ML Metadata lives: SQLite under the pipeline root (default) or a MySQL-compatible server.

The password of the MySQL user is read from an environment variable (its name is a setting), never from code or
files: configs are saved next to the outputs as JSON and must hold nothing secret.
"""
from __future__ import annotations

import dataclasses
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
    return connection


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
