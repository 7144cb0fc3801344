"""Hostile requests against a real `lakeloop up` on loopback: what a web page (CSRF, DNS rebinding),
a token-guessing client or a greedy one may send. Each gets its 4xx/5xx, and the lake folder, the
catalog and the stream store are unchanged afterwards; legitimate clients keep working."""
import hashlib
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT, Server, error_code, run_cli

SHOP = ROOT / "examples" / "shop"
EVENTS_CAP = 500
JSON = {"Content-Type": "application/json"}
FORM = "application/x-www-form-urlencoded"


# ---------------------------------------------------------------------------------------------
# Fingerprint of the data directory: every file (logs, the scratch folder and the process's own
# files excluded; RocksDB's info logs too), and the catalog dumped row by row (read-only), since
# SQLite's files may change on a checkpoint without any row changing.

def catalog_rows(db: Path):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        names = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for name in names:
            rows = con.execute(f'SELECT * FROM "{name}"').fetchall()
            out[name] = sorted(repr(r) for r in rows)
        return out
    finally:
        con.close()


def fingerprint(data: Path):
    files = {}
    for p in sorted(data.rglob("*")):
        rel = p.relative_to(data)
        if p.is_dir() or rel.parts[0] in ("logs", "tmp"):
            continue
        if rel.name in ("server.json", "lakeloop.lock", "admin.token") or rel.name.startswith("catalog.db"):
            continue
        if rel.parts[0] == "streams" and rel.name.startswith("LOG"):
            continue
        files[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return {"files": files, "catalog": catalog_rows(data / "catalog.db")}


def assert_unchanged(before, data: Path):
    after = fingerprint(data)
    assert after["files"] == before["files"], diff_keys(before["files"], after["files"])
    assert after["catalog"] == before["catalog"], [
        t for t in after["catalog"] if after["catalog"][t] != before["catalog"].get(t)]


def diff_keys(a, b):
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


# ---------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client: exact headers (requests adds its own), a chosen source address.

class Raw:
    def __init__(self, port, source="127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                             source_address=(source, 0))
        self.buf = b""

    def request(self, method, target, body=b"", headers=None, host="127.0.0.1"):
        if isinstance(body, str):
            body = body.encode()
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"] if host is not None else \
            [f"{method} {target} HTTP/1.1"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return self.read()

    def read(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before a response")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def close(self):
        self.sock.close()


def raw(port, method, target, body=b"", headers=None, host="127.0.0.1", source="127.0.0.1"):
    c = Raw(port, source)
    try:
        return c.request(method, target, body, headers, host)
    finally:
        c.close()


def code_of(body):
    return json.loads(body)["error"]["code"]


def event(i):
    return {"customer_id": i % 7, "ts": "2026-10-05T12:00:00Z", "event_type": "click",
            "event_id": f"e{i}"}


# ---------------------------------------------------------------------------------------------
# One server for the module: a stream, an uploaded table, a few events.

@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    project = base / "project"
    (project / "streams").mkdir(parents=True)
    (project / "streams" / "clicks.yaml").write_text((SHOP / "streams" / "clicks.yaml").read_text())
    (project / "lakeloop.yaml").write_text(
        "name: hostile\n"
        "server:\n  max_body_bytes: 1048576\n  worker_threads: 2\n  max_connections: 24\n"
        f"  max_events_per_request: {EVENTS_CAP}\n  auth_failures_per_minute: 20\n"
        "sql:\n  threads: 1\n  memory_limit: 1GB\n")
    data = base / "data"
    run_cli(project, data, "apply")
    s = Server(project, data).start()
    try:
        r = s.commit("raw.items", "id,name\n1,apple\n2,pear\n")
        assert r.status_code == 201, r.text
        r = requests.post(f"{s.url}/api/v1/streams/clicks/events",
                          data=json.dumps([event(i) for i in range(20)]), headers=JSON, timeout=30)
        assert r.status_code == 200 and r.json()["accepted"] == 20, r.text
        assert requests.post(f"{s.url}/api/v1/streams/clicks/archive", timeout=60).status_code == 200
        wait_quiet(s)
        yield s
    finally:
        s.stop()


def wait_quiet(s, timeout=30):
    """Until the background work on the seeded data (archiver, feature processor) stops changing
    the data directory: two fingerprints a second apart agree."""
    deadline = time.monotonic() + timeout
    prev = fingerprint(s.data)
    while time.monotonic() < deadline:
        time.sleep(1)
        cur = fingerprint(s.data)
        if cur == prev:
            return
        prev = cur
    raise AssertionError("the data directory keeps changing with no requests")


STATE_CHANGING = [
    ("/api/v1/tables/raw.items/commits?mode=overwrite&format=csv", "id,name\n9,evil\n"),
    ("/api/v1/streams/clicks/events", json.dumps([event(99)])),
    ("/api/v1/runs", json.dumps({"job": "stream:clicks"})),
    ("/api/v1/tokens", json.dumps({"role": "admin"})),
    ("/api/v1/apply", json.dumps({"dry_run": False})),
    ("/api/v1/build", ""),
    ("/api/v1/streams/clicks/archive", ""),
]


# ---------------------------------------------------------------------------------------------

def test_legitimate_clients_still_work(hostile):
    s = hostile
    # curl-like: application/json, no Origin.
    r = requests.post(s.url + "/api/v1/sql", data='{"sql": "SELECT count(*) AS n FROM raw.items"}',
                      headers=JSON, timeout=30)
    assert r.status_code == 200 and r.json()["rows"] == [[2]], r.text
    # A same-origin page (the future web UI): Origin is this server.
    r = requests.post(s.url + "/api/v1/sql", json={"sql": "SELECT 1 AS x"},
                      headers={"Origin": s.url, "Sec-Fetch-Site": "same-origin"}, timeout=30)
    assert r.status_code == 200, r.text
    status, _, _ = raw(s.port, "POST", "/api/v1/sql", '{"sql": "SELECT 1"}',
                       {"Content-Type": "application/json", "Origin": f"http://localhost:{s.port}"},
                       host=f"localhost:{s.port}")
    assert status == 200
    # The CLI through the running server (it sends its content types).
    p = run_cli(s.project, s.data, "sql", "SELECT count(*) AS n FROM raw.items", "--format", "csv")
    assert p.stdout.strip().splitlines()[-1] == "2"
    # curl: the README's examples send their type; `curl -d` alone sends a form type (415).
    sql = '{"sql": "SELECT 1 AS one"}'
    ok = subprocess.run(["curl", "-s", "-H", "Content-Type: application/json",
                         f"{s.url}/api/v1/sql", "-d", sql], capture_output=True, text=True)
    assert json.loads(ok.stdout)["rows"] == [[1]], ok.stdout
    bare = subprocess.run(["curl", "-s", f"{s.url}/api/v1/sql", "-d", sql],
                          capture_output=True, text=True)
    assert json.loads(bare.stdout)["error"]["code"] == "unsupported_media_type"
    # Tokens may expire; a bad expiry is refused.
    r = requests.post(s.url + "/api/v1/tokens", json={"role": "reader", "expires_in_s": 3600},
                      timeout=10)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    r = requests.get(s.url + "/api/v1/tables", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200
    r = requests.post(s.url + "/api/v1/tokens", json={"role": "reader", "expires_in_s": 0}, timeout=10)
    assert r.status_code == 400 and error_code(r) == "invalid_argument"
    # GET needs no content type; health from anywhere on loopback.
    assert requests.get(s.url + "/api/v1/tables", timeout=10).status_code == 200
    assert requests.get(f"http://localhost:{s.port}/api/v1/health", timeout=10).status_code == 200


def test_cross_site_form_posts_are_refused(hostile):
    s = hostile
    before = fingerprint(s.data)
    for target, body in STATE_CHANGING:
        # What an HTML form on evil.example sends.
        status, _, resp = raw(s.port, "POST", target, body,
                              {"Content-Type": FORM, "Origin": "http://evil.example",
                               "Sec-Fetch-Site": "cross-site"})
        assert status == 403 and code_of(resp) == "permission_denied", (target, resp)
        # The same without the browser's headers (an old browser): the form type alone is refused.
        status, _, resp = raw(s.port, "POST", target, body, {"Content-Type": FORM})
        assert status == 415 and code_of(resp) == "unsupported_media_type", (target, resp)
        status, _, resp = raw(s.port, "POST", target, body, {"Content-Type": "text/plain"})
        assert status == 415, (target, resp)
        status, _, resp = raw(s.port, "POST", target, body,
                              {"Content-Type": "multipart/form-data; boundary=x"})
        assert status == 415, (target, resp)
        # A fetch() from another origin with a JSON type (a CORS preflight would have been
        # refused; the request itself is refused too), and from a sandboxed page.
        for origin in ("http://evil.example", "null", f"http://localhost:{s.port + 1}"):
            status, _, resp = raw(s.port, "POST", target, body,
                                  {"Content-Type": "application/json", "Origin": origin})
            assert status == 403, (target, origin, resp)
        status, headers, _ = raw(s.port, "OPTIONS", target, b"",
                                 {"Origin": "http://evil.example",
                                  "Access-Control-Request-Method": "POST"})
        assert status == 403 and "access-control-allow-origin" not in headers
    assert_unchanged(before, s.data)


def test_rebinding_host_headers_get_421(hostile):
    s = hostile
    before = fingerprint(s.data)
    for host in ("evil.example:8080", "evil.example", f"attacker.localhost.evil.example:{s.port}",
                 "127.0.0.1.nip.io"):
        status, _, resp = raw(s.port, "GET", "/api/v1/tables", host=host)
        assert status == 421 and code_of(resp) == "misdirected_request", (host, resp)
        assert "server.allowed_hosts" in json.loads(resp)["error"]["message"]
        status, _, _ = raw(s.port, "GET", "/api/v1/health", host=host)
        assert status == 421
        for target, body in STATE_CHANGING:
            ct = "text/csv" if "commits" in target else "application/json"
            status, _, resp = raw(s.port, "POST", target, body, {"Content-Type": ct}, host=host)
            assert status == 421, (host, target, resp)
    status, _, resp = raw(s.port, "GET", "/api/v1/tables", host=None)  # HTTP/1.1 without Host
    assert status == 400
    assert_unchanged(before, s.data)


def test_wrong_content_types_get_415(hostile):
    s = hostile
    before = fingerprint(s.data)
    cases = [
        ("/api/v1/sql", '{"sql": "SELECT 1"}', "application/xml"),
        ("/api/v1/sql", '{"sql": "SELECT 1"}', None),  # a body without a type
        ("/api/v1/streams/clicks/events", "customer_id,ts\n1,2026-10-05T12:00:00Z\n", "text/csv"),
        ("/api/v1/tables/raw.items/commits?format=csv", "id,name\n9,evil\n", "image/png"),
        ("/api/v1/tables/raw.items/commits?format=csv", "id,name\n9,evil\n", None),
        ("/api/v1/runs", json.dumps({"job": "stream:clicks"}), "text/json"),
        ("/api/v1/tokens", json.dumps({"role": "admin"}), "application/x-www-form-urlencoded"),
    ]
    for target, body, ct in cases:
        headers = {"Content-Type": ct} if ct else {}
        status, _, resp = raw(s.port, "POST", target, body, headers)
        assert status == 415 and code_of(resp) == "unsupported_media_type", (target, ct, resp)
        message = json.loads(resp)["error"]["message"]
        assert "application/json" in message or "text/csv" in message  # names what is accepted
    assert_unchanged(before, s.data)
    # The OpenAPI document shows each route's accepted types.
    doc = requests.get(s.url + "/api/v1/openapi.json", timeout=10).json()
    upload = doc["paths"]["/api/v1/tables/{zone}.{table}/commits"]["post"]["requestBody"]["content"]
    assert "text/csv" in upload and "application/vnd.apache.parquet" in upload
    assert FORM not in upload


def test_bad_token_flood_is_throttled_while_health_answers(hostile):
    s = hostile
    before = fingerprint(s.data)
    flood = Raw(s.port, source="127.0.0.2")  # the attacker's address (127/8 is all loopback)
    statuses = []
    health_worst = 0.0
    try:
        for i in range(2000):
            st, headers, _ = flood.request("GET", "/api/v1/tables",
                                           headers={"Authorization": f"Bearer ll_{secrets.token_hex(24)}"})
            statuses.append(st)
            if st == 429:
                assert int(headers["retry-after"]) > 0
            if i % 200 == 0:  # a good client meanwhile
                t0 = time.monotonic()
                assert requests.get(s.url + "/api/v1/health", timeout=5).status_code == 200
                health_worst = max(health_worst, time.monotonic() - t0)
    finally:
        flood.close()
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}, sorted(set(statuses[20:]))
    assert health_worst < 1.0, health_worst
    # Open routes still answer the attacker; the good client's token-less requests too.
    assert raw(s.port, "GET", "/api/v1/health", source="127.0.0.2")[0] == 200
    assert requests.get(s.url + "/api/v1/tables", timeout=10).status_code == 200
    assert_unchanged(before, s.data)


def test_too_many_connections_get_503(hostile):
    s = hostile
    before = fingerprint(s.data)
    held = []
    busy = None
    try:
        for _ in range(40):  # max_connections is 24
            c = Raw(s.port)
            try:
                status, headers, body = c.request("GET", "/api/v1/health")
            except (ConnectionError, OSError):
                c.close()
                continue
            if status == 503:
                busy = (status, headers, body)
                c.close()
                break
            held.append(c)
        assert busy is not None, f"{len(held)} connections were all served"
        assert len(held) <= 24
        assert busy[1]["retry-after"] == "1" and code_of(busy[2]) == "unavailable"
    finally:
        for c in held:
            c.close()
    # Once they are closed, new connections are served again (bounded poll).
    deadline = time.monotonic() + 10
    ok = False
    while not ok and time.monotonic() < deadline:
        ok = requests.get(s.url + "/api/v1/health", timeout=5).status_code == 200
    assert ok
    assert_unchanged(before, s.data)


def test_events_over_the_cap_get_413(hostile):
    s = hostile
    before = fingerprint(s.data)
    total = requests.get(s.url + "/api/v1/streams/clicks", timeout=10).json()["events"]
    big = [event(1000 + i) for i in range(EVENTS_CAP + 1)]
    for body in (json.dumps(big), "\n".join(json.dumps(e) for e in big)):
        status, _, resp = raw(s.port, "POST", "/api/v1/streams/clicks/events", body,
                              {"Content-Type": "application/json"})
        assert status == 413 and code_of(resp) == "payload_too_large", resp
        assert "server.max_events_per_request" in json.loads(resp)["error"]["message"]
        assert len(resp) < 500  # a short error, not a reject list
    # Invalid events over the cap are refused the same way, before validation.
    status, _, resp = raw(s.port, "POST", "/api/v1/streams/clicks/events",
                          json.dumps([{"bad": i} for i in range(EVENTS_CAP * 4)]),
                          {"Content-Type": "application/json"})
    assert status == 413 and len(resp) < 500
    assert requests.get(s.url + "/api/v1/streams/clicks", timeout=10).json()["events"] == total
    assert_unchanged(before, s.data)


def test_full_ingest_queue_is_429_with_retry_after(tmp_path):
    """The event log's group-commit queue holds 10 events; its committer is held mid-commit (a pause
    point) with 6 in flight, so 6 more do not fit: 429 + Retry-After, nothing stored; after the
    release both batches are stored. No timing luck: the test waits for the pause to be reached."""
    project = tmp_path / "project"
    (project / "streams").mkdir(parents=True)
    (project / "streams" / "clicks.yaml").write_text((SHOP / "streams" / "clicks.yaml").read_text())
    (project / "lakeloop.yaml").write_text(
        "name: queue\nserver:\n  worker_threads: 2\n  ingest_queue_events: 10\n"
        "sql:\n  threads: 1\n  memory_limit: 1GB\n")
    data = tmp_path / "data"
    run_cli(project, data, "apply")
    fifo = tmp_path / "pause"
    os.mkfifo(fifo)
    reached = Path(str(fifo) + ".reached")
    s = Server(project, data, env={"LAKELOOP_PAUSE_AT": "stream.commit.before_write",
                                   "LAKELOOP_PAUSE_FIFO": str(fifo)}).start()
    url = f"{s.url}/api/v1/streams/clicks/events"
    results = []
    first = None
    try:
        first = threading.Thread(target=lambda: results.append(requests.post(
            url, data=json.dumps([event(i) for i in range(6)]), headers=JSON, timeout=60)))
        first.start()
        deadline = time.monotonic() + 30
        while not reached.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reached.exists(), "the committer never reached the pause point"
        second = [event(100 + i) for i in range(6)]
        r = requests.post(url, data=json.dumps(second), headers=JSON, timeout=30)
        assert r.status_code == 429, r.text
        assert error_code(r) == "resource_exhausted"
        assert r.headers["Retry-After"] == "1"
        with open(fifo, "w"):
            pass  # release the committer
        first.join(60)
        assert results and results[0].status_code == 200 and results[0].json()["accepted"] == 6
        r = requests.post(url, data=json.dumps(second), headers=JSON, timeout=30)
        assert r.status_code == 200 and r.json()["accepted"] == 6, r.text
    finally:
        if first is not None and first.is_alive():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass
        s.stop()


def test_cli_gives_up_on_a_stalled_answer(hostile):
    """The CLI's client has a read timeout: a query that outlasts it fails with a clear error
    naming the knob (the server interrupts the abandoned query)."""
    s = hostile
    p = run_cli(s.project, s.data, "--timeout", "0.3", "sql",
                "SELECT sum(i * i) FROM range(10000000000) t(i)", check=False, timeout=60)
    assert p.returncode != 0
    assert "deadline_exceeded" in p.stderr + p.stdout and "--timeout" in p.stderr + p.stdout
    assert requests.get(s.url + "/api/v1/health", timeout=10).status_code == 200
    r = requests.post(s.url + "/api/v1/sql", json={"sql": "SELECT 1 AS x"}, timeout=30)
    assert r.status_code == 200
