// The control API (/api/v1) as seen by the creator panel: bearer token
// kept in sessionStorage (or localStorage when "remember" was ticked).

const STORE_KEY = 'ugc.apiToken';

export function savedToken() {
  return sessionStorage.getItem(STORE_KEY) || localStorage.getItem(STORE_KEY) || '';
}

export function saveToken(token, remember) {
  clearToken();
  (remember ? localStorage : sessionStorage).setItem(STORE_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(STORE_KEY);
  localStorage.removeItem(STORE_KEY);
}

/** An error answer of the API: HTTP status and its `error` text. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the API; resolves to the parsed JSON (null for 204). */
export async function api(method, path, body, token = savedToken()) {
  const headers = { Authorization: `Bearer ${token}` };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/api/v1${path}`, init);
  } catch {
    throw new ApiError(0, 'The server cannot be reached.');
  }
  if (res.status === 204) return null;
  let json = null;
  try {
    json = await res.json();
  } catch {
    // not JSON: keep the status text
  }
  if (!res.ok) {
    throw new ApiError(res.status, (json && json.error) || res.statusText || `HTTP ${res.status}`);
  }
  return json;
}
