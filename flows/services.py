"""`make services`: PostgreSQL, an MLflow tracking server and a Prefect server on loopback, shared by every run.

Why: the embedded default (a SQLite store under run_root, a private Prefect server per run) needs nothing started,
but it is one person's store and one process's orchestration history. These three are what a team or a CI job shares:
one MLflow server (UI, registry, artifact proxy) and one Prefect server (UI, flow-run history), both on one
PostgreSQL cluster. Configured by conf/services.yml (flows/services_config.py).

Idempotent throughout: initdb only when the cluster is missing, CREATE DATABASE only for a missing database, each
server started only when it does not answer already (a crashed one is started again); `stop` stops what runs.
PostgreSQL refuses root, so as root the cluster belongs to, and runs as, `postgres.os_user`. MLflow and Prefect run
detached in sessions of their own (so `make services` returns), their pids in `<root>/<name>.pid`, stopped as whole
process groups. `start` writes `<root>/env.mk` (MLFLOW_TRACKING_URI, PREFECT_API_URL) for the Makefile to include,
so `make pipeline` uses the servers while they run; `stop` removes it.

    python -m flows.services start|stop|status [--config conf/services.yml] [key=value ...]
"""
from __future__ import annotations

import argparse
import os
import pwd
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from flows.services_config import DEFAULT_CONF, ServicesConfig, load_services_config
from flows.ui import MLFLOW_ENV, _signal_group
from tasks.config import ConfigError

STOP_GRACE_S = 15.0
# Variables a server must not inherit from a shell that already points at shared servers (env.mk, a user's export).
CLIENT_ENV = ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_PROFILE")


class ServicesError(RuntimeError):
    """A service could not be started or stopped; the message says which and where its log is."""


@dataclass
class Outcome:
    """What `start` did for one service: `action` is "started", "running" (left alone) or a failure's message."""

    name: str
    address: str
    action: str
    seconds: float
    detail: str = ""


class Services:
    """The three services of one config: their files under `root`, and how to start, probe and stop each."""

    def __init__(self, config: ServicesConfig):
        self.config = config
        self.root = config.root.resolve()
        self.pg_dir = self.root / "postgres"  # owned by the cluster's account: data, log, password
        self.data = self.pg_dir / "data"
        self.password_file = self.pg_dir / "password"
        self.logs = self.root / "logs"
        host = config.host
        self.mlflow_url = f"http://{host}:{config.mlflow.port}"
        self.prefect_api = f"http://{host}:{config.prefect.port}/api"
        self.prefect_ui = f"http://{host}:{config.prefect.port}"
        self.health = {"mlflow": f"{self.mlflow_url}/health", "prefect": f"{self.prefect_api}/health"}
        self.env_file = self.root / "env.mk"

    # ---- PostgreSQL --------------------------------------------------------------------------------------------
    def _owner(self) -> dict:
        """subprocess arguments that run a PostgreSQL binary as the cluster's account (only needed as root)."""
        if os.geteuid() != 0:
            return {}
        try:
            account = pwd.getpwnam(self.config.postgres.os_user)
        except KeyError:
            raise ServicesError(f"postgres.os_user={self.config.postgres.os_user}: no such account; PostgreSQL "
                                "refuses to run as root (apt-get install postgresql creates `postgres`)") from None
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _pg(self, tool: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        bin_dir = self.config.postgres.binaries()
        if bin_dir is None:
            raise ServicesError("PostgreSQL is not installed (no pg_ctl in /usr/lib/postgresql/*/bin or on PATH): "
                                "apt-get install postgresql, or set postgres.bin_dir")
        return subprocess.run([str(bin_dir / tool), *args], capture_output=True, text=True, timeout=timeout,
                              cwd=self.pg_dir, env={**os.environ, "LC_ALL": "C"}, **self._owner())

    def _prepare_pg_dir(self) -> None:
        """<root>/postgres, owned by the cluster's account and private to it; fail early if it cannot reach it."""
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        if owner:
            os.chown(self.pg_dir, owner["user"], owner["group"])
        self.pg_dir.chmod(0o700)
        if subprocess.run(["test", "-w", str(self.pg_dir)], **owner).returncode != 0:
            raise ServicesError(f"the {self.config.postgres.os_user} account cannot reach {self.pg_dir}: every "
                                "folder above it must be searchable by it (chmod o+x), or set root= elsewhere")

    def init_cluster(self) -> bool:
        """initdb with a generated password for `postgres.user`, when the cluster is missing; True when created."""
        self._prepare_pg_dir()
        if (self.data / "PG_VERSION").is_file():
            if not self.password_file.is_file():
                raise ServicesError(f"the cluster in {self.data} exists but its password file {self.password_file} "
                                    "is gone: remove the folder to start afresh")
            return False
        self.password_file.write_text(secrets.token_urlsafe(24))
        self.password_file.chmod(0o600)
        owner = self._owner()
        if owner:
            os.chown(self.password_file, owner["user"], owner["group"])
        done = self._pg("initdb", "-D", str(self.data), "-U", self.config.postgres.user,
                        f"--pwfile={self.password_file}", "--auth=scram-sha-256", "-E", "UTF8", "--no-locale",
                        timeout=self.config.startup_timeout_s)
        if done.returncode != 0:
            raise ServicesError(f"initdb failed in {self.data}:\n{done.stderr.strip()}")
        return True

    def postgres_running(self) -> bool:
        """pg_ctl's own answer from the data folder's postmaster.pid (0: running, 3: stopped, 4: no cluster)."""
        return self.data.is_dir() and self._pg("pg_ctl", "status", "-D", str(self.data)).returncode == 0

    def postgres_answers(self) -> bool:
        return self._pg("pg_isready", "-q", "-h", self.config.host, "-p", str(self.config.postgres.port),
                        "-t", "2").returncode == 0

    def start_postgres(self) -> str:
        """pg_ctl start on loopback only, no Unix socket, unless it runs already; "started" or "running"."""
        pg = self.config.postgres
        if self.postgres_running():
            if not self.postgres_answers():
                raise ServicesError(f"PostgreSQL runs from {self.data} but does not answer on {self.config.host}:"
                                    f"{pg.port} (started with another port?): run `stop`, then `start`")
            return "running"
        options = f"-c listen_addresses={self.config.host} -c port={pg.port} -c unix_socket_directories=''"
        log = self.pg_dir / "postgres.log"
        done = self._pg("pg_ctl", "start", "-D", str(self.data), "-l", str(log), "-w",
                        "-t", str(int(self.config.startup_timeout_s)), "-o", options,
                        timeout=self.config.startup_timeout_s + 10)
        if done.returncode != 0:
            raise ServicesError(f"PostgreSQL did not start on {self.config.host}:{pg.port}; {log} ends:\n"
                                f"{_tail(log)}")
        return "started"

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def database_url(self, database: str, driver: str) -> str:
        pg = self.config.postgres
        return f"{driver}://{pg.user}:{self.password()}@{self.config.host}:{pg.port}/{database}"

    def create_databases(self) -> list[str]:
        """CREATE DATABASE for each of MLflow's and Prefect's that is missing; the names created."""
        import psycopg2

        pg = self.config.postgres
        try:
            conn = psycopg2.connect(host=self.config.host, port=pg.port, user=pg.user, password=self.password(),
                                    dbname="postgres", connect_timeout=10)
        except psycopg2.OperationalError as err:
            raise ServicesError(f"cannot log in to PostgreSQL as postgres.user={pg.user} on {self.config.host}:"
                                f"{pg.port} (the cluster's owner role is the one it was created with): "
                                f"{str(err).strip()}") from None
        created = []
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                for name in (pg.mlflow_database, pg.prefect_database):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{name}"')  # a validated plain identifier
                        created.append(name)
        finally:
            conn.close()
        return created

    def stop_postgres(self) -> bool:
        if not self.postgres_running():
            return False
        done = self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", str(int(STOP_GRACE_S)))
        if done.returncode != 0:
            raise ServicesError(f"pg_ctl stop failed: {done.stderr.strip()}")
        return True

    # ---- MLflow and Prefect ------------------------------------------------------------------------------------
    def servers(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        """Name -> (command, extra environment) of each HTTP server."""
        bin_dir, cfg = Path(sys.executable).parent, self.config
        artifacts = cfg.mlflow.artifacts_destination or str(self.root / "mlflow-artifacts")
        # the driver named: SQLAlchemy 2.1's bare postgresql:// means psycopg 3, which is not installed
        mlflow_env = {**MLFLOW_ENV, "MLFLOW_BACKEND_STORE_URI": self.database_url(cfg.postgres.mlflow_database,
                                                                                  "postgresql+psycopg2")}
        if cfg.mlflow.s3_endpoint_url:
            mlflow_env["MLFLOW_S3_ENDPOINT_URL"] = cfg.mlflow.s3_endpoint_url
        prefect_env = {"PREFECT_HOME": str(self.root / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "PREFECT_UI_API_URL": self.prefect_api,  # the UI's own calls: this server, not :4200
                       "PREFECT_SERVER_DATABASE_CONNECTION_URL":
                           self.database_url(cfg.postgres.prefect_database, "postgresql+asyncpg")}
        # the store URIs carry the password: environment only, never the command line (`ps` shows that to all)
        return {
            "mlflow": ([str(bin_dir / "mlflow"), "server", "--host", cfg.host, "--port", str(cfg.mlflow.port),
                        "--workers", str(cfg.mlflow.workers), "--artifacts-destination", artifacts],
                       mlflow_env),
            "prefect": ([str(bin_dir / "prefect"), "server", "start", "--host", cfg.host, "--port",
                         str(cfg.prefect.port)], prefect_env),
        }

    def pid(self, name: str) -> int | None:
        """The live process recorded in <root>/<name>.pid, if it is still that server (not a recycled pid)."""
        try:
            pid = int((self.root / f"{name}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) and name in _cmdline(pid) else None

    def launch(self, name: str) -> None:
        """Start one server detached, in a session of its own, its output in <root>/logs/<name>.log."""
        cmd, extra_env = self.servers()[name]
        env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV} | extra_env
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=self.root, start_new_session=True)
        (self.root / f"{name}.pid").write_text(str(proc.pid))

    def wait_healthy(self, names: list[str]) -> dict[str, float]:
        """Wait for each server's health URL; name -> when it answered (monotonic). Fails on exit or timeout."""
        deadline, answered = time.monotonic() + self.config.startup_timeout_s, {}
        while len(answered) < len(names):
            for name in names:
                if name in answered:
                    continue
                if _answers(self.health[name]):
                    answered[name] = time.monotonic()
                elif self.pid(name) is None:
                    raise ServicesError(f"the {name} server exited at start (`stop` stops the others); "
                                        f"{self.logs / name}.log ends:\n{_tail(self.logs / f'{name}.log')}")
            if time.monotonic() > deadline and len(answered) < len(names):
                late = [n for n in names if n not in answered]
                raise ServicesError(f"{', '.join(late)} did not answer within {self.config.startup_timeout_s:.0f} s "
                                    f"(startup_timeout_s); see {self.logs}/")
            time.sleep(0.25)
        return answered

    def stop_server(self, name: str) -> bool:
        """SIGTERM the server's process group, SIGKILL what is left after STOP_GRACE_S; True if it was running."""
        pid, pid_file = self.pid(name), self.root / f"{name}.pid"
        if pid is not None:
            _signal_group(pid, signal.SIGTERM)  # start_new_session: the group id is the leader's pid
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline and (_alive(pid) or _group(pid)):
                time.sleep(0.2)
            _signal_group(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        return pid is not None

    # ---- all three ---------------------------------------------------------------------------------------------
    def exports(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.mlflow_url, "PREFECT_API_URL": self.prefect_api}

    def start(self) -> list[Outcome]:
        """Everything that is not up: cluster, databases, then both servers at once (Prefect's migrations and
        MLflow's imports overlap). Writes env.mk once all three answer."""
        cfg, outcomes = self.config, []
        self.root.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        created_cluster = self.init_cluster()
        action = self.start_postgres()
        databases = self.create_databases()
        details = ["initdb"] * created_cluster + [f"created {', '.join(databases)}"] * bool(databases)
        outcomes.append(Outcome("PostgreSQL", f"{cfg.host}:{cfg.postgres.port}", action, time.monotonic() - began,
                                "; ".join(details)))
        began = time.monotonic()
        names = {"mlflow": ("MLflow", self.mlflow_url), "prefect": ("Prefect", self.prefect_ui)}
        launched = []
        for name, (label, url) in names.items():
            if self.pid(name) is None:
                if _answers(self.health[name]):
                    raise ServicesError(f"{url} answers but is not this root's {label} server ({self.root}/{name}.pid"
                                        f" names no live one): stop it, or set {name}.port")
                self.launch(name)
                launched.append(name)
        answered = self.wait_healthy(list(names))
        for name, (label, url) in names.items():
            seconds = answered[name] - began if name in launched else 0.0
            outcomes.append(Outcome(label, url, "started" if name in launched else "running", seconds))
        lines = [f"export {k} ?= {v}" for k, v in self.exports().items()]
        self.env_file.write_text("\n".join(["# written by `make services` (python -m flows.services start); removed "
                                            "by `make services-stop`", *lines, ""]))
        return outcomes

    def stop(self) -> list[str]:
        """Stop the servers, then PostgreSQL; remove env.mk. The names of those that were running."""
        self.env_file.unlink(missing_ok=True)
        stopped = [label for name, label in (("mlflow", "MLflow"), ("prefect", "Prefect")) if self.stop_server(name)]
        if self.config.postgres.binaries() is not None and self.pg_dir.is_dir() and self.stop_postgres():
            stopped.append("PostgreSQL")
        return stopped

    def status(self) -> dict[str, str]:
        """Name -> "running <address> (pid N)" or "stopped"."""
        out = {"PostgreSQL": "stopped"}
        if self.config.postgres.binaries() is not None and self.pg_dir.is_dir() and self.postgres_running():
            answers = "" if self.postgres_answers() else ", not answering"
            out["PostgreSQL"] = f"running {self.config.host}:{self.config.postgres.port}{answers}"
        for name, label, url in (("mlflow", "MLflow", self.mlflow_url), ("prefect", "Prefect", self.prefect_ui)):
            pid = self.pid(name)
            answers = "" if pid and _answers(self.health[name]) else ", not answering"
            out[label] = f"running {url} (pid {pid}){answers}" if pid else "stopped"
        return out


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (one of ours that exited is reaped here)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _group(group: int) -> list[int]:
    """The live (not zombie) processes of a process group: uvicorn workers may outlive their leader, and a leader
    whose parent has exited stays a zombie until init reaps it, which kill(0) would count as alive."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(stat.parent.name))
    return members


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} is missing)"


def summary(services: Services, outcomes: list[Outcome], seconds: float) -> str:
    """What runs where, how long each took, and the lines that point a shell at the servers."""
    rows = [f"services in {services.root}: up in {seconds:.1f} s"]
    for o in outcomes:
        took = f"{o.seconds:5.1f} s" if o.action == "started" else "       "
        rows.append(f"  {o.name:<11} {o.address:<28} {o.action:<8} {took}  {o.detail}".rstrip())
    rows.append(f"  Prefect API {services.prefect_api}")
    rows += [f"export {k}={v}" for k, v in services.exports().items()]
    rows.append(f"(make pipeline reads these from {services.env_file}; logs in {services.logs}/ and "
                f"{services.pg_dir}/postgres.log; make services-stop stops all three)")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.services", description="PostgreSQL, an MLflow tracking "
                                     "server and a Prefect server on loopback (conf/services.yml)")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. mlflow.port=5002 root=/srv/tf")
    parser.add_argument("--config", default=str(DEFAULT_CONF), help="default: conf/services.yml")
    args = parser.parse_args(argv)
    try:
        services = Services(load_services_config(args.config, args.overrides))
        if args.command == "start":
            began = time.monotonic()
            outcomes = services.start()
            print(summary(services, outcomes, time.monotonic() - began), flush=True)
        elif args.command == "stop":
            stopped = services.stop()
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running", flush=True)
        else:
            for name, state in services.status().items():
                print(f"{name:<11} {state}")
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    except ServicesError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
