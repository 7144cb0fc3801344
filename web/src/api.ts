// The public REST API, same origin only (the server's Host/Origin rules: src/api/README.md).
// The token lives in sessionStorage (gone when the tab closes) and is sent as a Bearer token.

const TOKEN_KEY = "lakeloop.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}
export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = getToken();
  if (token) headers["Authorization"] = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const err = json?.error;
    throw new ApiError(res.status, err?.code ?? "http_" + res.status, err?.message ?? text);
  }
  return json as T;
}

export interface Health {
  status: string;
  version: string;
  uptime_s: number;
  catalog: string;
}
export interface TableInfo {
  name: string;
  zone: string;
  table: string;
  version: number;
  row_count: number;
  bytes: number;
  files: number;
}
export interface SqlResult {
  columns: { name: string; type: string }[];
  rows: unknown[][];
  row_count: number;
  truncated: boolean;
}

export const api = {
  health: () => call<Health>("GET", "/api/v1/health"),
  tables: () => call<{ tables: TableInfo[] }>("GET", "/api/v1/tables"),
  sql: (sql: string, limit = 1000) => call<SqlResult>("POST", "/api/v1/sql", { sql, limit }),
};
