"""SQL over HTTP and the CLI: formats, sandbox, errors, auth, limits."""
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from conftest import Server, error_code, run_cli


def test_health_and_openapi(server):
    r = requests.get(server.url + "/api/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    doc = requests.get(server.url + "/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ["/api/v1/health", "/api/v1/sql", "/api/v1/tables", "/api/v1/openapi.json",
                 "/api/v1/tables/{zone}.{table}", "/api/v1/tables/{zone}.{table}/commits",
                 "/api/v1/tokens"]:
        assert path in doc["paths"], path


def test_select_42_as_json_csv_parquet(server):
    r = server.sql("SELECT 42 AS answer")
    assert r.status_code == 200
    body = r.json()
    assert body == {"columns": [{"name": "answer", "type": "INTEGER"}], "rows": [[42]],
                    "row_count": 1, "truncated": False}
    r = server.sql("SELECT 42 AS answer", headers={"Accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/csv")
    assert r.text.splitlines() == ["answer", "42"]
    r = server.sql("SELECT 42 AS answer", params={"format": "parquet"})
    assert r.status_code == 200
    t = pq.read_table(io.BytesIO(r.content))
    assert t.column("answer").to_pylist() == [42]


def test_cli_sql_prints_42_embedded_and_through_server(project, data_dir):
    p = run_cli(project, data_dir, "sql", "SELECT 42 AS answer")
    assert "42" in p.stdout.split()
    s = Server(project, data_dir).start()
    try:
        p = run_cli(project, data_dir, "sql", "SELECT 42 AS answer", "--format", "csv")
        assert p.stdout.splitlines() == ["answer", "42"]
        p = run_cli(project, data_dir, "sql", "SELECT 42 AS answer", "--format", "json")
        assert json.loads(p.stdout)["rows"] == [[42]]
    finally:
        s.stop()


def test_limit_and_truncation(server):
    r = server.sql("SELECT * FROM range(100)", body={"limit": 10})
    body = r.json()
    assert body["row_count"] == 10 and body["truncated"] is True
    assert [row[0] for row in body["rows"]] == list(range(10))
    r = server.sql("SELECT * FROM range(5)", body={"limit": 10})
    assert r.json()["truncated"] is False
    assert server.sql("SELECT 1", body={"limit": -1}).status_code == 400


@pytest.mark.parametrize("query", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "COPY (SELECT 1) TO '/tmp/lakeloop-e2e-x.csv'",
    "ATTACH '/tmp/lakeloop-e2e.db' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CREATE TABLE t AS SELECT 1",
    "SELECT 1; SELECT 2",
    "SET threads = 8",
    "PRAGMA version",
    "DROP VIEW IF EXISTS main.x",
])
def test_sandbox_refuses(server, query):
    r = server.sql(query)
    assert 400 <= r.status_code < 500, (query, r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] in ("statement_not_allowed", "sql_error", "permission_denied")
    assert err["message"]
    assert not os.path.exists("/tmp/lakeloop-e2e-x.csv")
    assert not os.path.exists("/tmp/lakeloop-e2e.db")
    assert server.sql("SELECT 1").status_code == 200  # still serving


def test_reading_outside_the_lake_names_the_problem(server):
    r = server.sql("SELECT * FROM read_csv('/etc/passwd')")
    assert r.status_code == 400
    assert "/etc/passwd" in r.json()["error"]["message"] or "access" in r.json()["error"]["message"].lower()


def test_invalid_sql_and_bodies(server):
    r = server.sql("SELEC 1")
    assert r.status_code == 400 and error_code(r) == "sql_error"
    assert "syntax" in r.json()["error"]["message"].lower()
    r = server.sql("SELECT no_such_column")
    assert r.status_code == 400 and error_code(r) == "sql_error"
    r = requests.post(server.url + "/api/v1/sql", data="{not json",
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and error_code(r) == "malformed_request"
    r = requests.post(server.url + "/api/v1/sql", json={"query": "SELECT 1"}, timeout=10)
    assert r.status_code == 400 and error_code(r) == "invalid_argument"
    r = requests.post(server.url + "/api/v1/sql", json={"sql": 42}, timeout=10)
    assert r.status_code == 400 and error_code(r) == "invalid_argument"
    r = requests.post(server.url + "/api/v1/sql", json={"sql": "SELECT 1"},
                      params={"format": "xml"}, timeout=10)
    assert r.status_code == 400
    r = requests.get(server.url + "/api/v1/nope", timeout=10)
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = requests.get(server.url + "/api/v1/sql", timeout=10)
    assert r.status_code == 405


def test_body_too_large_is_413(server):
    big = "x" * (2 * 1024 * 1024)
    r = requests.post(server.url + "/api/v1/sql", json={"sql": "SELECT '" + big + "'"}, timeout=30)
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    assert server.sql("SELECT 1").status_code == 200


def test_roles(server, project, data_dir):
    p = run_cli(project, data_dir, "token", "create", "--role", "reader")
    reader = p.stdout.strip().splitlines()[-1]
    assert reader.startswith("ll_")
    assert server.sql("SELECT 1", token=reader).status_code == 200
    r = server.sql("CREATE TABLE t (a INT)", token=reader)
    assert r.status_code == 403 and error_code(r) == "permission_denied"
    r = server.sql("SELECT 1", token="ll_wrong")
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    r = server.commit("raw.t", "a\n1\n", token=reader)
    assert r.status_code == 403
    writer = run_cli(project, data_dir, "token", "create", "--role", "writer").stdout.strip().splitlines()[-1]
    r = server.sql("CREATE TABLE t (a INT)", token=writer)
    assert r.status_code == 400 and error_code(r) == "statement_not_allowed"
    assert server.commit("raw.t", "a\n1\n", token=writer).status_code == 201
    r = requests.post(server.url + "/api/v1/tokens", json={"role": "admin"},
                      headers={"Authorization": f"Bearer {writer}"}, timeout=10)
    assert r.status_code == 403


def test_auth_required_beyond_loopback(project, data_dir):
    s = Server(project, data_dir)
    s.listen = f"0.0.0.0:{s.port}"
    s.start()
    try:
        assert requests.get(s.url + "/api/v1/health").status_code == 200
        r = s.sql("SELECT 1")
        assert r.status_code == 401 and error_code(r) == "unauthenticated"
        assert "Bearer" in r.headers.get("WWW-Authenticate", "")
        assert s.sql("SELECT 1", token=s.admin_token()).status_code == 200
        # The CLI finds the server and its local admin token.
        p = run_cli(project, data_dir, "sql", "SELECT 7 AS seven", "--format", "csv")
        assert p.stdout.splitlines() == ["seven", "7"]
    finally:
        s.stop()


def test_query_timeout_interrupts(server):
    t0 = time.monotonic()
    r = server.sql("SELECT count(*) FROM range(1000000000000) a", body={"timeout_ms": 300})
    assert r.status_code == 504 and error_code(r) == "deadline_exceeded"
    assert time.monotonic() - t0 < 10
    assert server.sql("SELECT 1").status_code == 200


def test_second_server_on_same_data_is_refused(server, project, data_dir):
    other = Server(project, data_dir)
    other.start(wait=False)
    assert other.proc.wait(timeout=30) != 0
    assert "in use" in other.read_log()


def test_sigterm_drains_in_flight_request(project, data_dir):
    s = Server(project, data_dir).start()
    result = {}

    def slow():
        result["r"] = s.sql("SELECT count(*) FROM range(200000000) a, range(3) b")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert result["r"].status_code == 200
    assert result["r"].json()["rows"] == [[600000000]]
    assert s.proc.wait(timeout=30) == 0
    assert not (data_dir / "server.json").exists()


def test_client_disconnect_interrupts_query(tmp_path):
    """With one worker, a query abandoned by its client must be interrupted, or the next request
    would wait for it to finish."""
    import socket
    project = tmp_path / "p1"
    project.mkdir()
    (project / "lakeloop.yaml").write_text(
        "server:\n  worker_threads: 1\nsql:\n  threads: 1\n  query_timeout_ms: 600000\n")
    s = Server(project, tmp_path / "d1").start()
    try:
        body = json.dumps({"sql": "SELECT count(*) FROM range(1000000000000) a"}).encode()
        c = socket.create_connection(("127.0.0.1", s.port))
        c.sendall(b"POST /api/v1/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.3)  # let the worker pick it up
        c.close()
        t0 = time.monotonic()
        r = s.sql("SELECT 1 AS one", timeout=30)
        assert r.status_code == 200 and r.json()["rows"] == [[1]]
        assert time.monotonic() - t0 < 5
    finally:
        s.stop()


def test_python_client(server):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
    from lakeloop import Client, LakeloopError
    c = Client(server.url)
    assert c.sql("SELECT 42 AS answer") == [{"answer": 42}]
    c.commit("raw.t", "a,b\n1,x\n2,y\n")
    assert [t["name"] for t in c.tables()] == ["raw.t"]
    assert c.sql_arrow("SELECT * FROM raw.t").num_rows == 2
    with pytest.raises(LakeloopError) as e:
        c.sql("SELEC 1")
    assert e.value.status == 400 and e.value.code == "sql_error"
