"""A private PostgreSQL cluster for `make stack`: created under the stack's folder, served on loopback.

Debian's server binaries (`postgresql` 15) do the work. PostgreSQL refuses to run as root, so
when we are root the cluster belongs to the `postgres` system user and every server command
runs as that user (`setpriv`, which execs: signals reach the server itself).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"  # Debian's package creates it
SUPERUSER = "churn"
DATABASES = ("dagster", "mlflow")  # Dagster's instance storage; MLflow's backend store


def server_binary(name: str) -> str:
    """`initdb` / `postgres` from PATH, else Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise FileNotFoundError(
        f"PostgreSQL's `{name}` is not installed: `make stack` installs Debian's `postgresql` "
        "package (or run `apt-get install postgresql`)"
    )


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups", "--"]


def _check_reachable(path: Path) -> None:
    """As root the server runs as `postgres`, which must be able to walk down to the cluster."""
    if os.geteuid() != 0:
        return
    for folder in reversed(path.resolve().parents):
        if not os.stat(folder).st_mode & 0o001:
            raise PermissionError(
                f"PostgreSQL runs as the `{SERVER_USER}` user (we are root) and cannot enter {folder}: "
                f"allow it (`chmod o+x {folder}`), move the stack's folder (--root), or run as a normal user"
            )


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(path, user.pw_uid, user.pw_gid)


@dataclass(frozen=True)
class PostgresCluster:
    """One cluster directory; the password is generated once and kept beside it (mode 600)."""

    root: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.root / "cluster"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, database: str, scheme: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL (psycopg2: with SQLAlchemy 2.1 a bare postgresql:// wants psycopg 3)."""
        return f"{scheme}://{SUPERUSER}:{self.password}@{self.host}:{self.port}/{database}"

    def initialize(self) -> bool:
        """Create the cluster if it does not exist yet; True when it was created now."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        _check_reachable(self.root)
        _give_to_server_user(self.root)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24))
            self.password_file.chmod(0o600)
        # initdb reads the password as the server user: hand it a copy it can read, then remove it.
        handoff = self.root / "initdb-password"
        shutil.copyfile(self.password_file, handoff)
        handoff.chmod(0o600)
        _give_to_server_user(handoff)
        try:
            subprocess.run(
                [*_as_server_user(), server_binary("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                 f"--pwfile={handoff}", "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"],
                check=True, stdout=subprocess.DEVNULL,
            )
        finally:
            handoff.unlink()
        return True

    def server_command(self) -> list[str]:
        """The server in the foreground, TCP on loopback only (no Unix socket)."""
        return [
            *_as_server_user(), server_binary("postgres"), "-D", str(self.data_dir),
            "-p", str(self.port), "-c", f"listen_addresses={self.host}", "-c", "unix_socket_directories=",
        ]

    def create_databases(self) -> None:
        """Each database once; the server must be up."""
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=SUPERUSER, password=self.password,
                                dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                for database in DATABASES:
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{database}"')
        finally:
            conn.close()

    def accepts_connections(self) -> bool:
        import psycopg2

        try:
            psycopg2.connect(host=self.host, port=self.port, user=SUPERUSER, password=self.password,
                             dbname="postgres", connect_timeout=2).close()
        except psycopg2.OperationalError:
            return False
        return True
