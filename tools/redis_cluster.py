"""A local Redis Cluster for tests and benchmarks: masters and replicas on loopback ports,
started from the ``redis-server`` binary, with nothing saved to disk.

    python tools/redis_cluster.py start             # 3 masters, 3 replicas, ports 7000-7005
    python tools/redis_cluster.py start --masters 1 --replicas 0 --base-port 7100
    python tools/redis_cluster.py status            # the nodes, their roles and slots
    python tools/redis_cluster.py stop

``start`` is idempotent: a cluster already answering on those ports and serving every
slot is left as it is. Its URL is ``redis+cluster://127.0.0.1:7000/0``. Each node keeps
its files (``nodes.conf``, its log) in ``<dir>/<port>`` (``--dir``, by default
``$CONVEYOR_CLUSTER_DIR``, else ``$TMPDIR/conveyor-cluster``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"
#: Short enough that a test's failover takes a few seconds, long enough that a loaded
#: two-core machine does not mistake a slow node for a dead one.
NODE_TIMEOUT_MS = 2000
START_TIMEOUT = 60.0


def default_dir() -> Path:
    """Where the nodes keep their files: ``$CONVEYOR_CLUSTER_DIR``, or a folder of the
    system's temporary directory (the failover test finds the nodes' pids there)."""
    found = os.environ.get("CONVEYOR_CLUSTER_DIR")
    return Path(found) if found else Path(tempfile.gettempdir()) / "conveyor-cluster"


def redis_cli(port: int, *args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", HOST, "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"redis-cli -p {port} {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout


def cluster_info(port: int) -> dict[str, str]:
    try:
        text = redis_cli(port, "cluster", "info", check=False)
    except subprocess.TimeoutExpired:
        return {}
    return dict(line.split(":", 1) for line in text.split() if ":" in line)


def healthy(ports: list[int], masters: int) -> bool:
    """Every node answers, sees the whole cluster and serves all slots, and every
    replica follows a master."""
    for port in ports:
        info = cluster_info(port)
        if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != str(len(ports)):
            return False
        if info.get("cluster_size") != str(masters):
            return False
    following = 0
    for port in ports:
        replication = redis_cli(port, "info", "replication", check=False)
        # A replica whose first sync has not finished cannot take over its master.
        following += "role:slave" in replication and "master_link_status:up" in replication
    return following == len(ports) - masters


def master_of(port: int, key: str) -> int | None:
    """The port of the master serving ``key``'s slot, as the node on ``port`` sees it
    (``None`` while no live master serves it)."""
    slot = int(redis_cli(port, "cluster", "keyslot", key))
    for line in redis_cli(port, "cluster", "nodes").splitlines():
        fields = line.split()  # id address flags master ping pong epoch link slots...
        address, flags, link, slots = fields[1], fields[2], fields[7], fields[8:]
        if "master" not in flags or "fail" in flags or link != "connected":
            continue
        for served in slots:
            first, _, last = served.partition("-")
            if first.isdigit() and int(first) <= slot <= int(last or first):
                return int(address.split("@")[0].rsplit(":", 1)[1])
    return None


def start_node(port: int, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    options = {
        "port": str(port),
        "bind": HOST,
        "cluster-enabled": "yes",
        "cluster-config-file": "nodes.conf",
        "cluster-node-timeout": str(NODE_TIMEOUT_MS),
        "save": "",
        "appendonly": "no",
        "daemonize": "yes",
        "dir": str(home),
        "logfile": str(home / "redis.log"),
        "pidfile": str(home / "redis.pid"),
    }
    subprocess.run(
        ["redis-server", *(arg for name, value in options.items() for arg in (f"--{name}", value))],
        check=True,
        timeout=30,
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the local cluster did not {what} within {timeout:.0f} s")
        time.sleep(0.2)


def start(base: int, masters: int, replicas: int, root: Path) -> None:
    ports = [base + i for i in range(masters * (1 + replicas))]
    if healthy(ports, masters):
        print(f"cluster already up on {HOST}:{ports[0]}-{ports[-1]}")
        return
    stop(base, masters, replicas, root)
    for port in ports:
        home = root / str(port)
        shutil.rmtree(home, ignore_errors=True)  # a stale nodes.conf names old node ids
        start_node(port, home)
    wait_until(lambda: all(cluster_info(p) for p in ports), "start its nodes")
    if masters == 1:
        # redis-cli --cluster create wants three masters; one node takes every slot itself.
        for port in ports[1:]:
            redis_cli(port, "cluster", "meet", HOST, str(ports[0]))
        redis_cli(ports[0], "cluster", "addslotsrange", "0", "16383")
        wait_until(
            lambda: cluster_info(ports[-1]).get("cluster_known_nodes") == str(len(ports)), "meet"
        )
        master_id = redis_cli(ports[0], "cluster", "myid").strip()
        for port in ports[1:]:
            redis_cli(port, "cluster", "replicate", master_id)
    else:
        redis_cli(
            ports[0],
            "--cluster", "create",
            *(f"{HOST}:{port}" for port in ports),
            "--cluster-replicas", str(replicas),
            "--cluster-yes",
        )  # fmt: skip
    wait_until(lambda: healthy(ports, masters), "serve every slot")
    print(f"cluster up: {masters} masters, {replicas} replica(s) each,", end=" ")
    print(f"{HOST}:{ports[0]}-{ports[-1]}")
    print(f"URL: redis+cluster://{HOST}:{ports[0]}/0")


def stop(base: int, masters: int, replicas: int, root: Path) -> None:
    """SIGTERM every node, and wait until each has exited (its port free again)."""
    pids = []
    for i in range(masters * (1 + replicas)):
        pidfile = root / str(base + i) / "redis.pid"
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
        except (OSError, ValueError):
            continue
    wait_until(lambda: not any(_alive(pid) for pid in pids), "stop", timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def status(base: int) -> None:
    print(redis_cli(base, "cluster", "nodes"), end="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--base-port", type=int, default=7000)
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=default_dir())
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        print("redis-server and redis-cli are needed (Debian: apt install redis)", file=sys.stderr)
        return 1
    if args.action == "start":
        start(args.base_port, args.masters, args.replicas, args.dir)
    elif args.action == "stop":
        stop(args.base_port, args.masters, args.replicas, args.dir)
    else:
        status(args.base_port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
