"""Typed settings of the server and its workers (one object; the CLI fills it from its options)."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from medannot.errors import ConfigError
from medannot.server.security import PasswordPolicy

SECRET_FILE = "server.secret"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerSettings(BaseModel):
    """Every option of the server and the worker.

    Attributes:
        data_dir: Folder for the SQLite database (by default) and all stored files (images, masks, drafts).
        db_url: SQLAlchemy URL; None = SQLite at ``data_dir/medannot.db`` (WAL, ``synchronous=FULL``).
            PostgreSQL: ``postgresql+psycopg://user@host/db``.
        host: Address ``serve`` listens on. Anything but loopback needs users and a secret.
        port: TCP port of ``serve``.
        secret: Key of the HMAC that hashes session tokens in the database. None on loopback: a random
            secret is kept in ``data_dir/server.secret`` (mode 600).
        token_hours: Lifetime of a login token (hours).
        max_upload_bytes: Largest request body accepted (bytes); larger requests get 413.
        max_archive_files: Most files a zip upload may hold.
        max_archive_bytes: Largest total uncompressed size of a zip upload (bytes).
        lease_seconds: How long a claimed job stays a worker's without a heartbeat (s); then it is re-queued.
        heartbeat_seconds: How often a running worker renews its lease (s).
        poll_seconds: How long an idle worker waits before looking for a job again (s).
        job_delay_seconds: FOR TESTS AND DEMOS ONLY: the worker waits this long (heartbeating, progress
            advancing) before annotating, so that a test can kill it mid-job. 0 in production.
        max_json_bytes: Largest body of every request that is not an upload, a mask or a draft (bytes).
        max_image_bytes: Largest inflated voxel data of one uploaded image (bytes), checked from its header
            before anything is allocated; masks are bounded by their case's grid.
        max_upload_ratio: Largest ratio of inflated to compressed bytes of an uploaded gzip file or zip member.
        max_attempts: A job is tried at most this many times: a job that failed (an exception) or whose
            worker died (its lease ran out) that often is marked ``failed`` with the reason.
        password_min_length: Shortest password accepted when setting one (characters).
        password_max_length: Longest password accepted (characters).
        login_max_failures: Failed logins for one user name within ``login_window_seconds`` before it is
            locked for ``lockout_seconds`` (429 with Retry-After).
        login_max_failures_per_address: The same, per client address (all user names together).
        login_window_seconds: Window in which failed logins are counted (s).
        lockout_seconds: How long a user name or address stays locked (s).
        allowed_hosts: Host header values accepted (``*.example.org`` matches subdomains, ``*`` anything);
            empty: the loopback names when bound to loopback, else anything (``serve`` warns).
        tls_cert: PEM certificate file for HTTPS (with ``tls_key``).
        tls_key: PEM private key file for HTTPS.
        demo: Seed the demo user and project (loopback only).
    """

    model_config = ConfigDict(extra="forbid")

    data_dir: Path
    db_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    secret: str | None = None
    token_hours: float = Field(12.0, gt=0)
    max_upload_bytes: int = Field(512 * 1024**2, gt=0)
    max_archive_files: int = Field(5000, gt=0)
    max_archive_bytes: int = Field(4 * 1024**3, gt=0)
    lease_seconds: float = Field(60.0, gt=0)
    heartbeat_seconds: float = Field(5.0, gt=0)
    poll_seconds: float = Field(1.0, gt=0)
    job_delay_seconds: float = Field(0.0, ge=0)
    max_json_bytes: int = Field(1024**2, gt=0)
    max_image_bytes: int = Field(1024**3, gt=0)
    max_upload_ratio: float = Field(200.0, gt=1)
    max_attempts: int = Field(3, ge=1)
    password_min_length: int = Field(10, ge=1, le=256)
    password_max_length: int = Field(256, ge=8, le=4096)
    login_max_failures: int = Field(5, ge=1)
    login_max_failures_per_address: int = Field(20, ge=1)
    login_window_seconds: float = Field(900.0, gt=0)
    lockout_seconds: float = Field(900.0, gt=0)
    allowed_hosts: list[str] = Field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    demo: bool = False

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL actually used."""
        return self.db_url or f"sqlite:///{(Path(self.data_dir) / 'medannot.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        """True when the database is SQLite."""
        return self.database_url.startswith("sqlite")

    @property
    def on_loopback(self) -> bool:
        """True when the server listens on a loopback address only."""
        return is_loopback(self.host)

    def password_policy(self) -> PasswordPolicy:
        """The password rules of these settings."""
        return PasswordPolicy(self.password_min_length, self.password_max_length)

    def resolved_allowed_hosts(self) -> list[str]:
        """Host header values the server answers (see ``allowed_hosts``)."""
        hosts = [h.strip().lower() for h in self.allowed_hosts if h.strip()]
        if self.on_loopback:
            return sorted(set(hosts) | set(LOOPBACK_NAMES) | {self.host.strip("[]").lower()})
        return hosts or ["*"]

    def resolved_secret(self) -> str:
        """The token-hashing secret: the given one, else the one kept in ``data_dir`` (created on first use).

        Raises:
            ConfigError: If the secret file cannot be created.
        """
        if self.secret:
            return self.secret
        path = Path(self.data_dir) / SECRET_FILE
        if path.is_file():
            return path.read_text().strip()
        try:
            Path(self.data_dir).mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot create the secret file ({exc.strerror}); pass --secret", path) from exc
        value = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
            fh.flush()
            os.fsync(fh.fileno())
        return value

    def check_exposure(self, user_count: int) -> None:
        """Refuse a non-loopback address without users (auth) and an explicit secret, and demo mode off loopback.

        Raises:
            ConfigError: With a one-line reason and what to do.
        """
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("give both --tls-cert and --tls-key (PEM files), or neither")
        for what, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{what}: no such file", path)
        if self.password_min_length > self.password_max_length:
            raise ConfigError("password_min_length is above password_max_length")
        if is_loopback(self.host):
            return
        if self.demo:
            raise ConfigError(f"--demo creates the user demo/demo and is for loopback only; refusing to listen on {self.host}")
        if not self.secret:
            raise ConfigError(f"refusing to listen on non-loopback address {self.host} without a secret; pass --secret or --secret-file")
        if user_count == 0:
            raise ConfigError(
                f"refusing to listen on non-loopback address {self.host}: authentication is not configured (no users); "
                "add one with `medannot users add NAME --password-stdin --admin`"
            )
