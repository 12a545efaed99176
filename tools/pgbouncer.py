"""A local PgBouncer in transaction-pooling mode in front of the local PostgreSQL, for
tests and benchmarks (Debian: ``apt install pgbouncer``).

    python tools/pgbouncer.py start     # 127.0.0.1:6432 -> 127.0.0.1:5432, any database
    python tools/pgbouncer.py stop

``start`` is idempotent. Through it, the test database is
``postgresql+psycopg://postgres@127.0.0.1:6432/test?pooler=pgbouncer&direct=127.0.0.1:5432``.
Its files (configuration, log, pid) are in ``$CONVEYOR_PGBOUNCER_DIR``, else
``$TMPDIR/conveyor-pgbouncer``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
PORT = 6432
SERVER = "host=127.0.0.1 port=5432"
#: PgBouncer refuses to run as root; it drops to this user.
RUN_AS = "postgres"

CONFIG = """\
[databases]
* = {server}

[pgbouncer]
listen_addr = {host}
listen_port = {port}
auth_type = trust
auth_file = {home}/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
ignore_startup_parameters = extra_float_digits
logfile = {home}/pgbouncer.log
pidfile = {home}/pgbouncer.pid
"""


def default_dir() -> Path:
    found = os.environ.get("CONVEYOR_PGBOUNCER_DIR")
    return Path(found) if found else Path(tempfile.gettempdir()) / "conveyor-pgbouncer"


def answering(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


def start(home: Path, port: int) -> None:
    if answering(port):
        print(f"already up: something listens on {HOST}:{port}; left as it is")
        return
    home.mkdir(parents=True, exist_ok=True)
    config = CONFIG.format(server=SERVER, host=HOST, port=port, home=home)
    (home / "pgbouncer.ini").write_text(config)
    (home / "userlist.txt").write_text('"postgres" ""\n')
    command = ["pgbouncer", "-d"]
    if os.geteuid() == 0:
        shutil.chown(home, RUN_AS)
        for name in ("pgbouncer.ini", "userlist.txt"):
            shutil.chown(home / name, RUN_AS)
        command += ["-u", RUN_AS]
    subprocess.run([*command, str(home / "pgbouncer.ini")], check=True, timeout=30)
    deadline = time.monotonic() + 30
    while not answering(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"pgbouncer did not listen on {HOST}:{port}; see {home}")
        time.sleep(0.1)
    print(f"pgbouncer up on {HOST}:{port} (transaction pooling) in front of {SERVER}")


def stop(home: Path) -> None:
    try:
        pid = int((home / "pgbouncer.pid").read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--dir", type=Path, default=default_dir())
    args = parser.parse_args(argv)
    if shutil.which("pgbouncer") is None:
        print("pgbouncer is needed (Debian: apt install pgbouncer)", file=sys.stderr)
        return 1
    if args.action == "start":
        start(args.dir, args.port)
    else:
        stop(args.dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
