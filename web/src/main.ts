// lakeloop's web UI: a status page and a SQL worksheet (issue 12, first step). Hash routing
// (#/, #/sql) so every page is served by the same index.html.
import "./style.css";
import { api, ApiError, getToken, setToken } from "./api";
import { el, table } from "./dom";

const app = document.getElementById("app")!;
const logout = document.getElementById("logout") as HTMLButtonElement;

function showError(where: HTMLElement, e: unknown): void {
  if (e instanceof ApiError && e.status === 401) {
    renderLogin(e.message);
    return;
  }
  const text = e instanceof ApiError ? `${e.status} ${e.code}: ${e.message}` : String(e);
  where.replaceChildren(el("p", { class: "error", role: "alert", "data-testid": "error" }, text));
}

function renderLogin(message: string): void {
  const input = el("input", { type: "password", id: "token", autocomplete: "off", "data-testid": "token" });
  const form = el(
    "form",
    { class: "login", "data-testid": "login" },
    el("h2", {}, "Log in"),
    el("p", {}, "This server requires a token (", message, "). It is kept in this tab only."),
    el("label", { for: "token" }, "Token "),
    input,
    el("button", { type: "submit" }, "Log in"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken(input.value.trim() || null);
    route();
  });
  app.replaceChildren(form);
}

async function renderStatus(): Promise<void> {
  const health = el("section", { "data-testid": "health" }, "Loading…");
  const tables = el("section", { "data-testid": "tables" }, "Loading…");
  app.replaceChildren(el("h2", {}, "Status"), health, el("h2", {}, "Tables"), tables);
  try {
    const h = await api.health();
    health.replaceChildren(
      el("p", {}, "Server ", el("strong", { "data-testid": "health-status" }, h.status)),
      el("p", {}, `version ${h.version} · catalog ${h.catalog} · up ${Math.round(h.uptime_s)} s`),
    );
  } catch (e) {
    showError(health, e);
    return;
  }
  try {
    const t = await api.tables();
    if (t.tables.length === 0) {
      tables.replaceChildren(
        el("p", { class: "empty" }, "No tables yet: upload a file or run `lakeloop build`."),
      );
    } else {
      tables.replaceChildren(
        table(
          ["table", "version", "rows", "bytes", "files"],
          t.tables.map((x) => [x.name, x.version, x.row_count, x.bytes, x.files]),
          "tables-grid",
        ),
      );
    }
  } catch (e) {
    showError(tables, e);
  }
}

function renderSql(): void {
  const editor = el("textarea", { id: "sql", rows: "8", spellcheck: "false", "data-testid": "sql-editor" });
  editor.value = sessionStorage.getItem("lakeloop.sql") ?? "SELECT 42 AS answer";
  const run = el("button", { type: "button", "data-testid": "run" }, "Run (Ctrl+Enter)");
  const result = el("section", { "data-testid": "result" });
  const go = async () => {
    sessionStorage.setItem("lakeloop.sql", editor.value);
    result.replaceChildren(el("p", {}, "Running…"));
    const started = performance.now();
    try {
      const r = await api.sql(editor.value);
      const ms = Math.round(performance.now() - started);
      result.replaceChildren(
        el(
          "p",
          { "data-testid": "row-count" },
          `${r.row_count} row${r.row_count === 1 ? "" : "s"}${r.truncated ? " (truncated)" : ""} · ${ms} ms`,
        ),
        table(
          r.columns.map((c) => `${c.name} (${c.type})`),
          r.rows,
          "result-grid",
        ),
      );
    } catch (e) {
      showError(result, e);
    }
  };
  run.addEventListener("click", go);
  editor.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      void go();
    }
  });
  app.replaceChildren(el("h2", {}, "SQL worksheet"), editor, el("div", {}, run), result);
}

function route(): void {
  const page = location.hash.startsWith("#/sql") ? "sql" : "status";
  for (const a of document.querySelectorAll<HTMLAnchorElement>("nav a")) {
    a.classList.toggle("active", a.dataset.page === page);
  }
  logout.hidden = !getToken();
  if (page === "sql") renderSql();
  else void renderStatus();
}

logout.addEventListener("click", () => {
  setToken(null);
  route();
});
window.addEventListener("hashchange", route);
route();
