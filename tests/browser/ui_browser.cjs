// Drives Debian's Chromium (headless, playwright-core from web/node_modules) against a running
// `lakeloop up`. Called by tests/e2e/test_ui.py: `node ui_browser.cjs <scenario> '<json args>'`;
// prints one JSON line of observations on stdout, which the Python test asserts.
//   ui:        the UI loads, shows health, runs a SQL query and shows its rows.
//   crossorigin: a page from another origin posts a form and calls fetch() at the API.
//   rebinding: the API reached under a name that is not the server's (DNS rebinding) -> 421.
"use strict";
const path = require("path");
const { chromium } = require(path.join(__dirname, "..", "..", "web", "node_modules", "playwright-core"));

const [scenario, rawArgs] = process.argv.slice(2);
const args = JSON.parse(rawArgs || "{}");
const TIMEOUT = 20000;

async function withBrowser(extraArgs, fn) {
  const browser = await chromium.launch({
    executablePath: args.chromium || "/usr/bin/chromium",
    args: ["--no-sandbox", "--no-proxy-server", ...extraArgs],
    headless: true,
    timeout: 60000,
  });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    const consoleErrors = [];
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    const external = [];
    page.on("request", (r) => {
      const u = new URL(r.url());
      if (!["127.0.0.1", "localhost", "lakeloop.test"].includes(u.hostname) && u.protocol !== "data:") {
        external.push(r.url());
      }
    });
    return await fn(page, consoleErrors, external);
  } finally {
    await browser.close();
  }
}

async function shot(page, name) {
  if (args.screenshots) await page.screenshot({ path: path.join(args.screenshots, name + ".png"), fullPage: true });
}

async function ui() {
  return withBrowser([], async (page, consoleErrors, external) => {
    const out = {};
    const resp = await page.goto(args.url + "/", { waitUntil: "load" });
    out.index_status = resp.status();
    await page.getByTestId("health-status").waitFor();
    out.health = await page.getByTestId("health-status").textContent();
    await page.locator('[data-testid="tables-grid"], [data-testid="tables"] .empty').first().waitFor();
    out.tables_text = await page.getByTestId("tables").textContent();
    await shot(page, "status");
    await page.click('a[data-page="sql"]');
    await page.getByTestId("sql-editor").fill(args.sql);
    await page.getByTestId("sql-editor").press("Control+Enter");
    await page.locator('[data-testid="result-grid"], [data-testid="error"]').first().waitFor();
    out.row_count_text = await page.getByTestId("row-count").textContent();
    out.headers = await page.locator('[data-testid="result-grid"] th').allTextContents();
    out.rows = await page.locator('[data-testid="result-grid"] tbody tr').evaluateAll((trs) =>
      trs.map((tr) => Array.from(tr.querySelectorAll("td")).map((td) => td.textContent)),
    );
    await shot(page, "sql");
    // Bad SQL shows the API's error.
    await page.getByTestId("sql-editor").fill("SELEC nonsense");
    await page.getByTestId("run").click();
    await page.getByTestId("error").waitFor();
    out.error_text = await page.getByTestId("error").textContent();
    out.console_errors = consoleErrors.filter((t) => !t.includes("400"));
    out.external_requests = external;
    return out;
  });
}

async function crossorigin() {
  return withBrowser([], async (page) => {
    const out = { api_responses: [] };
    page.on("response", (r) => {
      if (r.url().startsWith(args.url + "/api/")) {
        out.api_responses.push({ url: r.url(), method: r.request().method(), status: r.status() });
      }
    });
    await page.goto(args.evil_url, { waitUntil: "load" });
    // The page's fetch() calls report what its script could read.
    await page.waitForFunction(() => window.__fetchDone === true, null, { timeout: TIMEOUT });
    out.fetch_results = await page.evaluate(() => window.__fetchResults);
    // Then its forms, submitted as a user click would (a top-level navigation to the API).
    for (const id of ["form-urlencoded", "form-textplain", "form-multipart"]) {
      await page.goto(args.evil_url, { waitUntil: "load" });
      const [nav] = await Promise.all([
        page.waitForResponse((r) => r.url().startsWith(args.url + "/api/") && r.request().method() === "POST"),
        page.click(`#${id} button`),
      ]);
      out[id] = nav.status();
    }
    return out;
  });
}

async function rebinding() {
  return withBrowser([`--host-resolver-rules=MAP lakeloop.test 127.0.0.1`], async (page) => {
    const out = {};
    const base = `http://lakeloop.test:${args.port}`;
    const resp = await page.goto(base + "/", { waitUntil: "load" });
    out.index_status = resp.status();
    // Script running on the rebound origin: same-origin to it, so it could read anything served.
    out.fetch = await page.evaluate(async () => {
      const r = await fetch("/api/v1/tables");
      const p = await fetch("/api/v1/sql", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sql: "SELECT 1" }),
      });
      return { tables_status: r.status, tables_body: await r.text(), sql_status: p.status };
    });
    return out;
  });
}

async function login() {
  return withBrowser([], async (page) => {
    const out = {};
    await page.goto(args.url + "/", { waitUntil: "load" });
    await page.getByTestId("login").waitFor();
    out.login_shown = true;
    await shot(page, "login");
    await page.getByTestId("token").fill(args.token);
    await page.getByTestId("token").press("Enter");
    await page.locator('[data-testid="tables-grid"], [data-testid="tables"] .empty').first().waitFor();
    out.tables_text = await page.getByTestId("tables").textContent();
    out.stored = await page.evaluate(() => sessionStorage.getItem("lakeloop.token"));
    await page.click('a[data-page="sql"]');
    await page.getByTestId("sql-editor").fill("SELECT 7 AS n");
    await page.getByTestId("run").click();
    await page.getByTestId("result-grid").waitFor();
    out.rows = await page.locator('[data-testid="result-grid"] td').allTextContents();
    return out;
  });
}

const scenarios = { ui, crossorigin, rebinding, login };
(async () => {
  const fn = scenarios[scenario];
  if (!fn) throw new Error("unknown scenario " + scenario);
  const out = await fn();
  process.stdout.write(JSON.stringify(out) + "\n");
})().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
