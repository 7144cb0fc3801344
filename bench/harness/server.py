"""Starts `lakeloop up` on a free port with a temporary data directory (pinned to the server cores)
and stops it; also a generic wait for any HTTP server (anchors) with a bounded timeout."""
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .env import BIN, free_port


def wait_http(url, proc=None, timeout_s=60.0):
    """Polls url until it answers (any HTTP status) or timeout_s passes; fails early if proc exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.01)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


class LakeloopServer:
    """`with LakeloopServer(project, pinning) as s: s.url` — a server on a free loopback port and
    a fresh data directory (removed at exit unless keep=True). `apply=True` runs `lakeloop apply`
    first."""

    def __init__(self, project, pinning=None, data=None, apply=False, binary=BIN, keep=False,
                 log=None):
        self.project = Path(project)
        self.pinning = pinning
        self._tmp = None if data else tempfile.mkdtemp(prefix="lakeloop-bench-data-")
        self.data = Path(data) if data else Path(self._tmp) / "data"
        self.binary = Path(binary)
        self.apply = apply
        self.keep = keep
        self.log = log
        self.proc = None
        self.url = None
        self.startup_s = None

    def start(self):
        if not self.binary.exists():
            raise FileNotFoundError(f"{self.binary} is not built (make build)")
        base = [str(self.binary), "--project", str(self.project), "--data", str(self.data)]
        if self.apply:
            subprocess.run(base + ["apply"], check=True, capture_output=True)
        port = free_port()
        cmd = base + ["up", "--listen", f"127.0.0.1:{port}"]
        if self.pinning:
            cmd = self.pinning.server(cmd)
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if self.log else out)
        self.url = f"http://127.0.0.1:{port}"
        wait_http(self.url + "/api/v1/health", self.proc, timeout_s=60)
        self.startup_s = time.monotonic() - t0
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmp and not self.keep:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
