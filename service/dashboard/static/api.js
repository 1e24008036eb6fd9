// REST client of the dashboard: every request carries the signed-in key, lists are read whole.
//
// The key lives in sessionStorage only (this tab, until it closes) and is sent only to this
// origin, in the Authorization header; no cookie is involved (credentials: "omit").

const STORAGE_KEY = "privflow.apiKey";
const PAGE = 1000;

/** A problem+json answer (API.md "Error codes"): act on `code`. */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
    this.code = (problem && problem.code) || "internal";
  }
}

export const keyStore = {
  get() {
    return window.sessionStorage.getItem(STORAGE_KEY);
  },
  set(key) {
    window.sessionStorage.setItem(STORAGE_KEY, key);
  },
  clear() {
    window.sessionStorage.removeItem(STORAGE_KEY);
  },
};

/** A client bound to one API key. */
export function createClient(key) {
  async function get(path, params = {}) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params)) {
      for (const item of Array.isArray(value) ? value : [value]) {
        url.searchParams.append(name, String(item));
      }
    }
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  /** Every item of a paginated list ({items, next_cursor}). */
  async function all(path) {
    const items = [];
    let cursor = null;
    do {
      const page = await get(path, cursor ? { limit: PAGE, cursor } : { limit: PAGE });
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return items;
  }

  const ds = (id) => `/v1/datasets/${encodeURIComponent(id)}`;
  return {
    me: () => get("/v1/me"),
    keys: () => all("/v1/keys"),
    datasets: () => all("/v1/datasets"),
    dataset: (id) => get(ds(id)),
    ledger: (id) => all(`${ds(id)}/ledger`),
    grants: (id) => all(`${ds(id)}/grants`),
    composition: (id) => get(`${ds(id)}/composition`),
  };
}
