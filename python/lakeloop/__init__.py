"""Python client for a lakeloop server: SQL, lake tables, runs, streams and online features.

    from lakeloop import Client
    c = Client("http://127.0.0.1:8080", token=None)
    c.sql("SELECT * FROM processed.daily_revenue ORDER BY day")      # -> list of dicts
    c.post_events("clicks", [{"customer_id": 7, "ts": "...", "event_type": "click"}])
    c.online_features("customer_activity", 7)                          # -> dict of values
"""
from __future__ import annotations

import io
import json
from typing import Any, Iterable, Optional

import requests

__all__ = ["Client", "LakeloopError"]


_UPLOAD_TYPES = {"csv": "text/csv", "json": "application/x-ndjson",
                 "parquet": "application/vnd.apache.parquet"}


class LakeloopError(Exception):
    """An error reply: `code` is the stable wire code (e.g. "sql_error"), `status` the HTTP status."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8080", token: Optional[str] = None,
                 timeout: float | tuple[float, float] = (5.0, 60.0)):
        """`timeout`: seconds for each request, or (connect, read) as in requests."""
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    # -- plumbing -------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kw) -> requests.Response:
        r = self.session.request(method, self.url + path, timeout=kw.pop("timeout", self.timeout), **kw)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise LakeloopError(r.status_code, err["code"], err["message"])
            except (ValueError, KeyError):
                raise LakeloopError(r.status_code, "http_error", r.text[:500]) from None
        return r

    # -- SQL ------------------------------------------------------------------------------------
    def query(self, sql: str, limit: Optional[int] = None) -> dict:
        """The raw reply: {"columns", "rows", "row_count", "truncated"}."""
        body: dict[str, Any] = {"sql": sql}
        if limit is not None:
            body["limit"] = limit
        return self._call("POST", "/api/v1/sql", json=body).json()

    def sql(self, sql: str, limit: Optional[int] = None) -> list[dict]:
        """Rows as dicts keyed by column name."""
        reply = self.query(sql, limit)
        names = [c["name"] for c in reply["columns"]]
        return [dict(zip(names, row)) for row in reply["rows"]]

    def sql_arrow(self, sql: str):
        """The full result as a pyarrow Table (exported by the server as Parquet)."""
        import pyarrow.parquet as pq
        r = self._call("POST", "/api/v1/sql", params={"format": "parquet"}, json={"sql": sql})
        return pq.read_table(io.BytesIO(r.content))

    # -- lake -----------------------------------------------------------------------------------
    def tables(self) -> list[dict]:
        return self._call("GET", "/api/v1/tables").json()["tables"]

    def table(self, name: str) -> dict:
        return self._call("GET", f"/api/v1/tables/{name}").json()

    def commit(self, table: str, data: bytes | str, format: str = "csv", mode: str = "append",
               expected_version: Optional[int] = None) -> dict:
        params: dict[str, Any] = {"format": format, "mode": mode}
        if expected_version is not None:
            params["expected_version"] = expected_version
        # The server accepts only declared content types on uploads (a form type never passes).
        content_type = _UPLOAD_TYPES.get(format, "application/octet-stream")
        return self._call("POST", f"/api/v1/tables/{table}/commits", params=params, data=data,
                          headers={"Content-Type": content_type}).json()

    def lineage(self, table: str) -> dict:
        return self._call("GET", f"/api/v1/lineage/{table}").json()

    # -- runs -----------------------------------------------------------------------------------
    def run(self, job: str, wait: bool = True, **params) -> dict:
        return self._call("POST", "/api/v1/runs", json={"job": job, "wait": wait, "params": params}).json()

    def runs(self, job: Optional[str] = None, limit: int = 100) -> list[dict]:
        params: dict[str, Any] = {"limit": limit}
        if job:
            params["job"] = job
        return self._call("GET", "/api/v1/runs", params=params).json()["runs"]

    # -- streams and features -------------------------------------------------------------------
    def post_events(self, stream: str, events: Iterable[dict]) -> dict:
        """{"accepted", "duplicates", "rejected": [{"index", "error"}]}; durable once returned."""
        body = "\n".join(json.dumps(e, separators=(",", ":")) for e in events)
        return self._call("POST", f"/api/v1/streams/{stream}/events", data=body,
                          headers={"Content-Type": "application/x-ndjson"}).json()

    def stream(self, name: str) -> dict:
        return self._call("GET", f"/api/v1/streams/{name}").json()

    def online_features(self, view: str, key: Any, at: Optional[str] = None) -> dict:
        params = {"at": at} if at else None
        return self._call("GET", f"/api/v1/features/online/{view}/{key}", params=params).json()["features"]
