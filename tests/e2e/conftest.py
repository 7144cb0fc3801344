"""End-to-end fixtures: the real `lakeloop` binary on a temporary project and data directory."""
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests


def under_ci():
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def require_component(ok, what):
    """A real component a test needs: skipped on a developer machine when missing, but under
    CI=true a missing component fails the run (setup installs every one)."""
    if ok:
        return
    if under_ci():
        pytest.fail(f"{what} is missing (scripts/setup.sh installs it); CI=true does not skip")
    pytest.skip(f"{what} is missing: run scripts/setup.sh")

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("LAKELOOP_BIN", ROOT / "build" / "lakeloop"))


# Upload content types the server accepts on POST .../commits (a form type never passes).
UPLOAD_TYPES = {"csv": "text/csv", "json": "application/x-ndjson",
                "parquet": "application/vnd.apache.parquet"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(project, data, *args, check=True, env=None, timeout=120):
    cmd = [str(BIN), "--project", str(project), "--data", str(data), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


class Server:
    """One `lakeloop up` process. Start/stop/kill it; call its API."""

    def __init__(self, project, data, listen=None, env=None):
        self.project = Path(project)
        self.data = Path(data)
        self.port = free_port()
        self.listen = listen or f"127.0.0.1:{self.port}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.proc = None
        self.log = None

    def start(self, env=None, wait=True):
        extra = dict(os.environ)
        extra.update(self.env or {})
        extra.update(env or {})
        self.log = open(self.data.parent / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [str(BIN), "--project", str(self.project), "--data", str(self.data), "up",
             "--listen", self.listen],
            stdout=self.log, stderr=subprocess.STDOUT, env=extra)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.read_log()}")
            try:
                r = requests.get(self.url + "/api/v1/health", timeout=1)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.02)
        raise AssertionError("server did not become healthy: " + self.read_log())

    def read_log(self):
        try:
            return (self.data.parent / f"server-{self.port}.log").read_text()[-4000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        if self.log:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def kill(self):
        return self.stop(signal.SIGKILL)

    def admin_token(self):
        return (self.data / "admin.token").read_text().strip()

    def sql(self, query, token=None, **kw):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = {"sql": query}
        body.update(kw.pop("body", {}))
        return requests.post(self.url + "/api/v1/sql", json=body, headers=headers,
                             params=kw.pop("params", None), timeout=kw.pop("timeout", 60))

    def commit(self, table, data, fmt="csv", mode="append", token=None, **params):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers["Content-Type"] = UPLOAD_TYPES.get(fmt, "application/octet-stream")
        q = {"format": fmt, "mode": mode}
        q.update(params)
        return requests.post(f"{self.url}/api/v1/tables/{table}/commits", data=data, params=q,
                             headers=headers, timeout=60)


@pytest.fixture
def project(tmp_path):
    p = tmp_path / "project"
    p.mkdir()
    (p / "lakeloop.yaml").write_text(
        "name: e2e\nserver:\n  max_body_bytes: 1048576\n  worker_threads: 2\n"
        "sql:\n  threads: 1\n  memory_limit: 1GB\n  query_timeout_ms: 20000\n")
    return p


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def server(project, data_dir):
    s = Server(project, data_dir).start()
    yield s
    s.stop()


def error_code(resp):
    return resp.json()["error"]["code"]
