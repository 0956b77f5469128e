// Every call the dashboard makes: same-origin fetches that carry the session cookie.
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code ?? "error";
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { accept: "application/json" };
  // Writes with a cookie need this header: a cross-site form cannot send it.
  if (method !== "GET") headers["x-autoglm-ui"] = "1";
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("autoglm:unauthorized"));
    throw new ApiError(response.status, data);
  }
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
