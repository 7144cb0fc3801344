// A few DOM helpers: text always goes through textContent (never innerHTML with data).
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(typeof c === "string" ? document.createTextNode(c) : c);
  return e;
}

export function cellText(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function table(headers: string[], rows: unknown[][], testid: string): HTMLTableElement {
  const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
  const body = el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((v) => el("td", {}, cellText(v))))));
  return el("table", { "data-testid": testid }, el("thead", {}, head), body);
}
