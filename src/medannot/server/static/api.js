// Talking to the medannot server: the login token (kept in sessionStorage), JSON and binary requests.
// Every /api call carries "Authorization: Bearer <token>"; a 401 sends the user back to the login page.

const TOKEN_KEY = "medannot.token";
const USER_KEY = "medannot.user";

/** An HTTP answer that was not 2xx: keeps the status and the decoded body (JSON when it is JSON). */
export class ApiError extends Error {
  constructor(status, body, url) {
    const detail = body && typeof body === "object" && "detail" in body ? body.detail : body;
    super(`${status} ${typeof detail === "string" ? detail : JSON.stringify(detail)} (${url})`);
    this.status = status;
    this.body = body;
    this.url = url;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function getUser() {
  const raw = sessionStorage.getItem(USER_KEY);
  return raw ? JSON.parse(raw) : null;
}

export function storeLogin(token, user) {
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(USER_KEY, JSON.stringify(user));
}

export function clearLogin() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
}

/** Go to the login page, coming back to the current page afterwards. */
export function redirectToLogin() {
  const next = encodeURIComponent(location.pathname + location.search + location.hash);
  location.assign(`/login?next=${next}`);
}

async function decodeBody(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return await response.text();
}

/**
 * One request to the API with the token.
 * @param {string} url - path such as "/api/projects".
 * @param {object} options - fetch options; `json` (an object) is sent as a JSON body.
 * @returns {Promise<Response>} the response when its status is 2xx.
 * @throws {ApiError} for any other status (after redirecting to the login page on 401).
 */
export async function request(url, options = {}) {
  const headers = new Headers(options.headers || {});
  const token = getToken();
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const init = { ...options, headers };
  if (options.json !== undefined) {
    headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(options.json);
    delete init.json;
  }
  const response = await fetch(url, init);
  if (response.ok) return response;
  const body = await decodeBody(response);
  if (response.status === 401) {
    clearLogin();
    redirectToLogin();
  }
  throw new ApiError(response.status, body, url);
}

/** GET/POST returning decoded JSON (null for 204). */
export async function requestJson(url, options = {}) {
  const response = await request(url, options);
  if (response.status === 204) return null;
  return await response.json();
}

/** GET returning the body as an ArrayBuffer, or null on 404. */
export async function requestBytes(url) {
  try {
    const response = await request(url);
    return await response.arrayBuffer();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

/** Send binary bytes (a NIfTI file) with the given method; returns decoded JSON or null. */
export async function sendBytes(url, method, bytes) {
  const response = await request(url, {
    method,
    body: bytes,
    headers: { "Content-Type": "application/octet-stream" },
  });
  if (response.status === 204) return null;
  return await decodeBody(response);
}

/** Log in and keep the token; returns the user. */
export async function login(username, password) {
  const response = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const body = await decodeBody(response);
  if (!response.ok) throw new ApiError(response.status, body, "/api/login");
  storeLogin(body.token, body.user);
  return body.user;
}
