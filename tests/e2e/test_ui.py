"""The web UI in a real browser (Debian's Chromium driven by playwright-core, issue 12): it works
under the server's Host/Origin/content-type rules, and a page from another origin or a rebound DNS
name cannot drive the API (issue 7 item 1). Also the static route's headers and path checks.

The browser side is tests/browser/ui_browser.cjs; under CI=true a missing node, Chromium,
playwright-core or built UI fails these tests instead of skipping them."""
import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from conftest import ROOT, error_code, require_component

WEB = ROOT / "web"
DRIVER = ROOT / "tests" / "browser" / "ui_browser.cjs"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "build" / "test-artifacts" / "ui"


@pytest.fixture
def built_ui():
    require_component((WEB / "dist" / "index.html").is_file(), "the built web UI (web/dist)")


@pytest.fixture
def browser(built_ui):
    require_component(shutil.which("node") is not None, "node")
    require_component(os.access(CHROMIUM, os.X_OK), CHROMIUM)
    require_component((WEB / "node_modules" / "playwright-core").is_dir(), "web/node_modules/playwright-core")

    def run(scenario, **args):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        args.setdefault("screenshots", str(ARTIFACTS))
        p = subprocess.run(["node", str(DRIVER), scenario, json.dumps(args)],
                           capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, f"browser scenario {scenario} failed:\n{p.stderr}\n{p.stdout}"
        return json.loads(p.stdout.strip().splitlines()[-1])
    return run


def tables_state(server):
    r = requests.get(server.url + "/api/v1/tables", timeout=10)
    assert r.status_code == 200, r.text
    return sorted((t["name"], t["version"], t["row_count"]) for t in r.json()["tables"])


# --- the static route, over plain HTTP ---------------------------------------------------------

def test_static_route_serves_the_ui_with_caching_headers(server, built_ui):
    r = requests.get(server.url + "/", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Cache-Control"] == "no-cache"
    assets = [a for a in (WEB / "dist" / "assets").iterdir() if a.suffix == ".js"]
    assert assets
    a = requests.get(f"{server.url}/assets/{assets[0].name}", timeout=10)
    assert a.status_code == 200
    assert a.headers["Content-Type"].startswith("text/javascript")
    assert a.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert a.content == assets[0].read_bytes()
    # A page of the single-page app (not a file) gets index.html; the API stays the API.
    page = requests.get(server.url + "/worksheet", timeout=10)
    assert page.status_code == 200 and page.text == r.text
    assert requests.get(server.url + "/api", timeout=10).status_code == 404
    assert requests.get(server.url + "/assets/nope-12345678.js", timeout=10).status_code == 404
    # Only GET: state-changing methods are not routed here.
    assert requests.post(server.url + "/", timeout=10).status_code == 405


@pytest.mark.parametrize("target", [
    "/assets/..%2F..%2Fsrc%2Fapi%2Fapi.h",
    "/assets/%2e%2e",
    "/..%2Fpackage.json",
    "/assets/index.js%00.png",
    "/assets/..%5Cpackage.json",
    "/%2Fetc%2Fpasswd",
])
def test_static_route_rejects_traversal(server, built_ui, target):
    # requests would normalise "/../"; send the raw target.
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    c.request("GET", target)
    resp = c.getresponse()
    body = resp.read()
    c.close()
    assert resp.status in (400, 404), (target, resp.status, body)
    assert b"root:" not in body and b"#pragma once" not in body and b"devDependencies" not in body


def test_static_route_without_a_built_ui_says_to_run_setup(project, data_dir):
    from conftest import Server
    (project / "lakeloop.yaml").write_text(
        (project / "lakeloop.yaml").read_text().replace(
            "server:\n", f"server:\n  web_root: {project / 'no-ui-here'}\n"))
    s = Server(project, data_dir).start()
    try:
        r = requests.get(s.url + "/", timeout=10)
        assert r.status_code == 404
        assert error_code(r) == "not_found"
        assert "setup" in r.json()["error"]["message"]
        assert requests.get(s.url + "/api/v1/health", timeout=10).status_code == 200
    finally:
        s.stop()


# --- in the browser ------------------------------------------------------------------------------

def test_ui_shows_health_and_runs_sql(server, browser):
    assert server.commit("raw.items", "id,name\n1,apple\n2,pear\n").status_code == 201
    out = browser("ui", url=server.url,
                  sql="SELECT id, name FROM raw.items ORDER BY id")
    assert out["index_status"] == 200
    assert out["health"] == "ok"
    assert "raw.items" in out["tables_text"]
    assert out["row_count_text"].startswith("2 rows")
    assert [h.split(" ")[0] for h in out["headers"]] == ["id", "name"]
    assert out["rows"] == [["1", "apple"], ["2", "pear"]]
    assert "invalid_argument" in out["error_text"] or "400" in out["error_text"]
    assert out["console_errors"] == []
    assert out["external_requests"] == []


def test_ui_asks_for_a_token_when_auth_is_required(project, data_dir, browser):
    from conftest import Server
    cfg = project / "lakeloop.yaml"
    cfg.write_text(cfg.read_text().replace("server:\n", "server:\n  require_auth: true\n"))
    s = Server(project, data_dir).start()
    try:
        assert requests.get(s.url + "/api/v1/tables", timeout=10).status_code == 401
        assert s.commit("raw.items", "id\n1\n", token=s.admin_token()).status_code == 201
        out = browser("login", url=s.url, token=s.admin_token())
        assert out["login_shown"] is True
        assert "raw.items" in out["tables_text"]
        assert out["stored"] == s.admin_token()
        assert out["rows"] == ["7"]
    finally:
        s.stop()


EVIL_PAGE = """<!doctype html><html><body>
<form id="form-urlencoded" method="POST" action="{api}/api/v1/tables/raw.items/commits?format=csv&mode=overwrite">
  <input name="id,name" value="9,evil"><button type="submit">go</button></form>
<form id="form-textplain" method="POST" enctype="text/plain" action="{api}/api/v1/tables/raw.items/commits?format=csv&mode=overwrite">
  <input name="id,name&#10;9,evil&#10;x" value="y"><button type="submit">go</button></form>
<form id="form-multipart" method="POST" enctype="multipart/form-data" action="{api}/api/v1/tables/raw.items/commits?format=csv&mode=overwrite">
  <input name="f" value="id,name"><button type="submit">go</button></form>
<script>
window.__fetchResults = {{}};
async function attempt(name, url, init) {{
  try {{
    const r = await fetch(url, init);
    window.__fetchResults[name] = {{read: true, status: r.status, body: await r.text()}};
  }} catch (e) {{
    window.__fetchResults[name] = {{read: false, error: String(e)}};
  }}
}}
(async () => {{
  await attempt("get_tables", "{api}/api/v1/tables", {{}});
  await attempt("sql_textplain", "{api}/api/v1/sql",
    {{method: "POST", headers: {{"Content-Type": "text/plain"}}, body: '{{"sql":"SELECT 1"}}'}});
  await attempt("sql_json", "{api}/api/v1/sql",
    {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: '{{"sql":"SELECT 1"}}'}});
  await attempt("commit_csv_nocors", "{api}/api/v1/tables/raw.items/commits?format=csv&mode=overwrite",
    {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: "id,name\\n9,evil\\n"}});
  window.__fetchDone = true;
}})();
</script></body></html>"""


@pytest.fixture
def evil_site(server):
    page = EVIL_PAGE.format(api=server.url).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/evil.html"
    httpd.shutdown()
    httpd.server_close()
    t.join(timeout=10)


def test_cross_origin_page_cannot_drive_the_api(server, browser, evil_site):
    assert server.commit("raw.items", "id,name\n1,apple\n2,pear\n").status_code == 201
    before = tables_state(server)
    out = browser("crossorigin", url=server.url, evil_url=evil_site)
    # Forms (what a page can send without a preflight) are refused.
    for form in ("form-urlencoded", "form-textplain", "form-multipart"):
        assert out[form] in (403, 415), (form, out)
    # fetch() cannot read the API's answers (no CORS header for a foreign origin).
    for name in ("get_tables", "sql_textplain", "sql_json"):
        assert out["fetch_results"][name]["read"] is False, (name, out)
    # A no-cors fetch gets an opaque response; whatever it sent was refused by the server.
    posts = [r for r in out["api_responses"] if r["method"] == "POST"]
    assert posts and all(r["status"] in (403, 415) for r in posts), out["api_responses"]
    # Nothing changed.
    assert tables_state(server) == before
    rows = server.sql("SELECT id, name FROM raw.items ORDER BY id").json()["rows"]
    assert rows == [[1, "apple"], [2, "pear"]]


def test_dns_rebinding_name_gets_421(server, browser):
    out = browser("rebinding", port=server.port)
    assert out["index_status"] == 421
    assert out["fetch"]["tables_status"] == 421
    assert "misdirected_request" in out["fetch"]["tables_body"]
    assert out["fetch"]["sql_status"] == 421
