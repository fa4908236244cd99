"""The team stack on one machine: PostgreSQL, the MLflow and Prefect servers on it, a Dask
cluster and the ``cpu`` / ``gpu`` Prefect workers, each its own process on 127.0.0.1.

    seqcast stack up [--dir DIR] [--auto-ports] [--host ADDR]   start what is not running
    seqcast stack status [--dir DIR]                            what runs, where
    seqcast stack down [--dir DIR] [--service NAME ...]         stop (all, or some)

Everything lives in one folder (``--dir``, default ``SEQCAST_STACK_DIR`` or
``<project>/.stack``): ``stack.json`` (ports, no secret), ``secret/pgpass`` (the generated
database password, libpq's passfile format, readable by its owner alone: the servers read it
through ``PGPASSFILE``, so it is on no command line and in no log), ``pg/`` (the database
cluster), ``artifacts/`` (MLflow's artifacts, served by the MLflow server), ``logs/`` and
``run/`` (a log and a pid file per service), ``env.sh`` (the environment a user exports).

PostgreSQL is Debian's ``postgresql`` package (``.ci/run`` installs it where it is missing).
Its server refuses to run as root: run as root, the stack runs it as the ``postgres`` user
(``runuser``), which then owns ``pg/``. Servers bind 127.0.0.1 unless ``--host`` says otherwise
(PostgreSQL always: only the servers beside it use it).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DB_USER = "seqcast"
DATABASES = ("mlflow", "prefect")
DEFAULT_PORTS = {"postgres": 55432, "mlflow": 5000, "prefect": 4200, "dask": 8786, "dask_dashboard": 8787}
SERVICES = ("postgres", "mlflow", "prefect", "dask-scheduler", "dask-workers", "worker-cpu", "worker-gpu")
DASK_WORKERS = 2


class StackError(RuntimeError):
    """A stack service cannot be started or reached; the message says which and what to do."""


# ---------------------------------------------------------------------------- processes
def bin_path(name: str) -> str:
    """A console script of this interpreter's environment (mlflow, prefect, dask)."""
    return str(Path(sys.executable).parent / name)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def spawn(args: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """A process in its own session (it outlives the command that started it), logged to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True)


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def terminate(pid: int, timeout: float = 30) -> None:
    """SIGTERM to the process group ``pid`` leads, SIGKILL when it is still there after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                if not alive(pid):
                    return
            time.sleep(0.2)


def wait_http(url: str, timeout: float, pid: int | None = None, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pid is not None and not alive(pid):
            raise StackError(f"{url}: the process exited before answering; its log:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # nosec B310 - loopback URLs built here
                if resp.status < 500:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise StackError(f"{url} did not answer in {timeout:.0f}s; its log:\n{_tail(log)}")


def wait_for_workers(address: str, n: int, timeout: float) -> None:
    import distributed

    with distributed.Client(address, timeout=timeout) as client:
        client.wait_for_workers(n, timeout=timeout)


def _tail(log: Path | None, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:] if log else ""
    except OSError:
        return ""


def worker_env(project: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process that runs the project's jobs (a Dask or Prefect worker):
    this interpreter first on PATH, the project importable, one thread per BLAS pool."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(project) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_ENABLE_TELEMETRY="false", DVC_NO_ANALYTICS="1",
               GX_ANALYTICS_ENABLED="false")
    return env


# ---------------------------------------------------------------------------- PostgreSQL
def pg_bindir() -> Path:
    """The newest PostgreSQL server of Debian's packages (``/usr/lib/postgresql/<major>/bin``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise StackError("no PostgreSQL server on this machine: install Debian's package "
                         "(apt-get install postgresql; .ci/run does it)")
    return found[-1].parent


@dataclass
class Stack:
    """One stack folder and what it holds."""

    dir: Path
    ports: dict[str, int]
    host: str = "127.0.0.1"

    # -- layout --
    @property
    def pgpass(self) -> Path:
        return self.dir / "secret" / "pgpass"

    def log(self, service: str) -> Path:
        return self.dir / "logs" / f"{service}.log"

    def pidfile(self, service: str) -> Path:
        return self.dir / "run" / f"{service}.pid"

    def pid(self, service: str) -> int | None:
        if service == "postgres":  # the postmaster's own pid file
            path = self.dir / "pg" / "postmaster.pid"
        else:
            path = self.pidfile(service)
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    # -- what a user reads --
    @property
    def urls(self) -> dict[str, str]:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # nosec B104 - only a display
        return {"MLFLOW_TRACKING_URI": f"http://{host}:{self.ports['mlflow']}",
                "PREFECT_API_URL": f"http://{host}:{self.ports['prefect']}/api",
                "SEQCAST_DASK_ADDRESS": f"tcp://{host}:{self.ports['dask']}"}

    def db_url(self, database: str, driver: str = "postgresql") -> str:
        """The database's URL without its password (libpq and asyncpg read it from ``PGPASSFILE``)."""
        return f"{driver}://{DB_USER}@127.0.0.1:{self.ports['postgres']}/{database}"

    def env(self) -> dict[str, str]:
        """The environment of the stack's servers: the passfile, no telemetry."""
        return worker_env(project_root(), {**os.environ, "PGPASSFILE": str(self.pgpass)})

    # -- persistence --
    @classmethod
    def open(cls, folder: Path, auto_ports: bool = False, host: str | None = None) -> Stack:
        folder = folder.resolve()
        config = folder / "stack.json"
        if config.is_file():
            saved = json.loads(config.read_text())
            stack = cls(folder, saved["ports"], host or saved.get("host", "127.0.0.1"))
        else:
            ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)))) if auto_ports else dict(DEFAULT_PORTS)
            stack = cls(folder, ports, host or "127.0.0.1")
        return stack

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "stack.json").write_text(json.dumps({"ports": self.ports, "host": self.host}, indent=1))
        lines = [f"export {k}={v}" for k, v in self.urls.items()]
        (self.dir / "env.sh").write_text("\n".join(lines) + "\n")

    # -- status --
    def health_url(self, service: str) -> str | None:
        return {"mlflow": f"http://127.0.0.1:{self.ports['mlflow']}/health",
                "prefect": f"http://127.0.0.1:{self.ports['prefect']}/api/ready",
                "dask-scheduler": f"http://127.0.0.1:{self.ports['dask_dashboard']}/health"}.get(service)

    def running(self, service: str) -> bool:
        if not alive(self.pid(service)):
            return False
        if service == "postgres":
            return port_open(self.ports["postgres"])
        url = self.health_url(service)
        if url is None:
            return True
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # nosec B310 - loopback
                return resp.status < 500
        except (urllib.error.URLError, OSError):
            return False


def project_root() -> Path:
    from seqcast.paths import project_root as root

    return root()


def default_dir() -> Path:
    return Path(os.environ.get("SEQCAST_STACK_DIR") or project_root() / ".stack")


# ---------------------------------------------------------------------------- starting
def _as_postgres(args: list[str]) -> list[str]:
    """Run a PostgreSQL program as the ``postgres`` user when this is root (the server refuses root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)


def _check_reachable_by_postgres(folder: Path) -> None:
    """Every folder above the data folder must let the ``postgres`` user through."""
    if os.geteuid() != 0:
        return
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise StackError(f"the postgres user cannot enter {parent} (mode {parent.stat().st_mode & 0o777:o}), "
                             f"so it cannot reach the stack folder {folder}: choose another --dir (e.g. "
                             f"/var/tmp/seqcast-stack) or chmod o+x {parent}")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _password(stack: Stack) -> str:
    """The database password: generated once, kept in the passfile (``host:port:db:user:password``)."""
    if stack.pgpass.is_file():
        return stack.pgpass.read_text().strip().rsplit(":", 1)[1]
    password = secrets.token_urlsafe(24)
    _write_private(stack.pgpass, f"127.0.0.1:*:*:{DB_USER}:{password}\n")
    return password


def start_postgres(stack: Stack) -> None:
    bindir = pg_bindir()
    data = stack.dir / "pg"
    _check_reachable_by_postgres(stack.dir)
    password = _password(stack)
    if not (data / "PG_VERSION").is_file():
        data.mkdir(parents=True, exist_ok=True)
        _chown_postgres(data)
        os.chmod(data, 0o700)
        init = stack.dir / "pg-init"
        init.mkdir(exist_ok=True)
        _chown_postgres(init)
        pwfile = init / "pw"
        _write_private(pwfile, password + "\n")
        os.chmod(init, 0o700)
        _chown_postgres(pwfile)
        try:
            out = subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", DB_USER,
                                               "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                                               "--locale=C.UTF-8"]), capture_output=True, text=True)
        finally:
            shutil.rmtree(init, ignore_errors=True)
        if out.returncode != 0:
            raise StackError(f"initdb failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    log = stack.log("postgres")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    _chown_postgres(log)
    options = f"-c listen_addresses=127.0.0.1 -p {stack.ports['postgres']} -k {data}"
    out = subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                                       "-w", "-t", "120", "start"]), capture_output=True, text=True)
    if out.returncode != 0:
        raise StackError(f"PostgreSQL did not start:\n{out.stdout[-1500:]}{out.stderr[-1500:]}\n{_tail(log)}")
    _create_databases(stack)


def psql(stack: Stack, database: str, query: str) -> str:
    """One SQL statement through ``psql`` as the stack's user (the password from the passfile)."""
    out = subprocess.run([str(pg_bindir() / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                          "-p", str(stack.ports["postgres"]), "-U", DB_USER, "-d", database, "-c", query],
                         capture_output=True, text=True, env={**os.environ, "PGPASSFILE": str(stack.pgpass)})
    if out.returncode != 0:
        raise StackError(f"PostgreSQL ({database}): {query}: {out.stderr.strip()}")
    return out.stdout


def _create_databases(stack: Stack) -> None:
    existing = psql(stack, "postgres", "SELECT datname FROM pg_database").split()
    for name in DATABASES:
        if name not in existing:
            psql(stack, "postgres", f"CREATE DATABASE {name}")
    psql(stack, "prefect", "CREATE EXTENSION IF NOT EXISTS pg_trgm")  # Prefect's search indexes


def _start(stack: Stack, service: str, args: list[str], env: dict[str, str], cwd: Path | None = None) -> int:
    proc = spawn(args, stack.log(service), env, cwd)
    stack.pidfile(service).parent.mkdir(parents=True, exist_ok=True)
    stack.pidfile(service).write_text(f"{proc.pid}\n")
    return proc.pid


def start_mlflow(stack: Stack) -> None:
    artifacts = stack.dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    pid = _start(stack, "mlflow", [bin_path("mlflow"), "server", "--backend-store-uri", stack.db_url("mlflow"),
                                   "--artifacts-destination", str(artifacts), "--serve-artifacts",
                                   "--host", stack.host, "--port", str(stack.ports["mlflow"]), "--workers", "1"],
                 stack.env(), stack.dir)
    wait_http(stack.health_url("mlflow"), 300, pid, stack.log("mlflow"))
    _open_the_store(stack, pid)


def _open_the_store(stack: Stack, pid: int) -> None:
    """The server opens its backend store at its first query, retrying a database that does not
    answer for about 100 s, and keeps it: one query now, so that the store is known to work and a
    later query meets the database at once (a database that goes down is then reported in the
    answer, its address in it, instead of a request that hangs). One worker process holds the one
    store (it serves requests on threads)."""
    url = stack.health_url("mlflow").removesuffix("/health") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=180) as resp:  # nosec B310 - loopback URL built here
            resp.read(256)
    except (urllib.error.URLError, OSError) as err:
        raise StackError(f"the MLflow server answers but cannot use its backend store ({err}); "
                         f"is PostgreSQL up? its log:\n{_tail(stack.log('mlflow'))}") from None
    if not alive(pid):
        raise StackError(f"the MLflow server exited after its first query; its log:\n{_tail(stack.log('mlflow'))}")


def start_prefect(stack: Stack) -> None:
    env = stack.env()
    env.update(PREFECT_API_DATABASE_CONNECTION_URL=stack.db_url("prefect", "postgresql+asyncpg"),
               PREFECT_HOME=str(stack.dir / "prefect-home"), PREFECT_SERVER_API_HOST=stack.host,
               PREFECT_SERVER_API_PORT=str(stack.ports["prefect"]))
    env.pop("PREFECT_API_URL", None)
    pid = _start(stack, "prefect", [bin_path("prefect"), "server", "start", "--host", stack.host,
                                    "--port", str(stack.ports["prefect"])], env, stack.dir)
    wait_http(stack.health_url("prefect"), 300, pid, stack.log("prefect"))


def start_dask_scheduler(stack: Stack) -> None:
    pid = _start(stack, "dask-scheduler", [bin_path("dask"), "scheduler", "--host", stack.host, "--port",
                                           str(stack.ports["dask"]), "--dashboard-address",
                                           f"{stack.host}:{stack.ports['dask_dashboard']}"], stack.env(), stack.dir)
    wait_http(stack.health_url("dask-scheduler"), 120, pid, stack.log("dask-scheduler"))


def _client_env(stack: Stack) -> dict[str, str]:
    """What a worker runs the project's code with: the stack's servers, not its passfile."""
    env = stack.env()
    env.pop("PGPASSFILE", None)
    env.update(stack.urls)
    return env


def start_dask_workers(stack: Stack) -> None:
    address = f"tcp://127.0.0.1:{stack.ports['dask']}"
    _start(stack, "dask-workers", [bin_path("dask"), "worker", address, "--nworkers", str(DASK_WORKERS),
                                   "--nthreads", "1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                                   "--host", "127.0.0.1"],
           _client_env(stack), project_root())
    try:
        wait_for_workers(address, DASK_WORKERS, timeout=300)
    except Exception as err:
        raise StackError(f"the Dask workers did not join {address}: {err}\n{_tail(stack.log('dask-workers'))}") from err


def start_prefect_worker(stack: Stack, pool: str) -> None:
    """A process worker of ``pool`` (created by the worker when missing); the gpu worker runs one
    flow run at a time (one GPU)."""
    limit = ["--limit", "1"] if pool == "gpu" else []
    _start(stack, f"worker-{pool}", [bin_path("prefect"), "worker", "start", "--pool", pool, "--type", "process",
                                     *limit], _client_env(stack), project_root())


STARTERS = {"postgres": start_postgres, "mlflow": start_mlflow, "prefect": start_prefect,
            "dask-scheduler": start_dask_scheduler, "dask-workers": start_dask_workers,
            "worker-cpu": lambda s: start_prefect_worker(s, "cpu"),
            "worker-gpu": lambda s: start_prefect_worker(s, "gpu")}


def _check_ports_free(stack: Stack, services: list[str]) -> None:
    port_of = {"postgres": "postgres", "mlflow": "mlflow", "prefect": "prefect", "dask-scheduler": "dask"}
    for service in services:
        key = port_of.get(service)
        if key and port_open(stack.ports[key]):
            raise StackError(f"port {stack.ports[key]} ({service}) is taken by another program: stop it, or start "
                             f"a stack with other ports (seqcast stack up --auto-ports --dir <a new folder>)")


def up(stack: Stack) -> list[str]:
    """Start every service that is not running, in dependency order (each checked once those it
    needs run: a server that lost its database answers again when it is back); returns those started."""
    stack.save()
    started = []
    for service in SERVICES:
        if stack.running(service):
            continue
        if service != "postgres" and alive(stack.pid(service)):  # a stale process that stopped answering
            terminate(stack.pid(service))
        _check_ports_free(stack, [service])
        print(f"starting {service} ...", flush=True)
        STARTERS[service](stack)
        started.append(service)
    return started


def down(stack: Stack, services: list[str] | None = None) -> list[str]:
    """Stop ``services`` (default all), in reverse dependency order; returns those stopped."""
    stopped = []
    for service in reversed(SERVICES):
        if services and service not in services:
            continue
        pid = stack.pid(service)
        if not alive(pid):
            continue
        if service == "postgres":
            subprocess.run(_as_postgres([str(pg_bindir() / "pg_ctl"), "-D", str(stack.dir / "pg"), "-m", "fast",
                                         "-w", "stop"]), capture_output=True, text=True)
        else:
            terminate(pid)
            stack.pidfile(service).unlink(missing_ok=True)
        stopped.append(service)
    return stopped


def status(stack: Stack) -> dict[str, dict]:
    return {s: {"pid": stack.pid(s), "running": stack.running(s), "log": str(stack.log(s))} for s in SERVICES}


def print_env(stack: Stack) -> None:
    print(f"MLflow UI and tracking: {stack.urls['MLFLOW_TRACKING_URI']}")
    print(f"Prefect UI: {stack.urls['PREFECT_API_URL'].removesuffix('/api')}")
    print(f"Dask dashboard: http://127.0.0.1:{stack.ports['dask_dashboard']}/status")
    print(f"PostgreSQL: 127.0.0.1:{stack.ports['postgres']} (user {DB_USER}, password in {stack.pgpass})")
    print(f"\n# the environment of a user of this stack (also in {stack.dir / 'env.sh'}):")
    for key, value in stack.urls.items():
        print(f"export {key}={value}")


# ---------------------------------------------------------------------------- seqcast run's preflight
def preflight() -> str | None:
    """What stops a pipeline run before any training: an MLflow store or a Prefect API (when one is
    configured) that cannot be used. Returns the message, or None when both can be used."""
    from seqcast.errors import StoreUnavailable
    from seqcast.tracking import check_store

    try:
        check_store()
    except StoreUnavailable as err:
        return str(err)
    api = os.environ.get("PREFECT_API_URL")
    if api:
        try:
            with urllib.request.urlopen(api.rstrip("/") + "/ready", timeout=10) as resp:  # nosec B310 - http(s)
                resp.read(64)
        except urllib.error.HTTPError as err:
            return (f"the Prefect API {api} answers but its database does not (HTTP {err.code} on /ready); "
                    f"nothing was trained. Is its PostgreSQL up? (seqcast stack status)")
        except (urllib.error.URLError, OSError) as err:
            return (f"the Prefect API {api} does not answer ({getattr(err, 'reason', err)}); nothing was trained. "
                    f"Start it (seqcast stack up) or unset PREFECT_API_URL")
    return None


# ---------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqcast stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "status", "down"])
    parser.add_argument("--dir", type=Path, default=None, help="the stack folder (default: SEQCAST_STACK_DIR "
                                                               "or <project>/.stack)")
    defaults = ", ".join(f"{k} {v}" for k, v in DEFAULT_PORTS.items())
    parser.add_argument("--auto-ports", action="store_true", help=f"a new stack: free ports instead of {defaults}")
    parser.add_argument("--host", help="the address the MLflow, Prefect and Dask servers bind (default 127.0.0.1)")
    parser.add_argument("--service", nargs="+", choices=SERVICES, help="down: only these")
    args = parser.parse_args(argv)
    stack = Stack.open(args.dir or default_dir(), args.auto_ports, args.host)
    try:
        if args.action == "up":
            started = up(stack)
            print(f"stack in {stack.dir}: {'started ' + ', '.join(started) if started else 'already running'}\n")
            print_env(stack)
        elif args.action == "down":
            stopped = down(stack, args.service)
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        else:
            states = status(stack)
            for service, s in states.items():
                print(f"{service:15} {'running' if s['running'] else 'stopped':8} pid {s['pid'] or '-':>7}  {s['log']}")
            print()
            print_env(stack)
            return 0 if all(s["running"] for s in states.values()) else 1
    except StackError as err:
        print(f"seqcast stack {args.action}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
