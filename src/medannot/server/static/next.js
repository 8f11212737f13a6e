// Where to go after logging in: only a path on this server (no open redirect).

/**
 * The `next` target when it is a same-origin relative path, else "/".
 * Browsers read "/\host", "/\t/host" or "//host" as another host; resolving against our origin and comparing
 * origins catches every such form, and only the path, query and fragment are kept.
 * @param {string|null} raw the `next` query parameter (may be null)
 * @param {string} origin this page's origin, e.g. location.origin
 * @returns {string} a path starting with a single "/"
 */
export function safeNext(raw, origin) {
  if (typeof raw !== "string" || !raw.startsWith("/") || raw.startsWith("//") || /[\\\u0000-\u001f\u007f]/.test(raw)) {
    return "/";
  }
  let url;
  try {
    url = new URL(raw, origin);
  } catch {
    return "/";
  }
  if (url.origin !== new URL(origin).origin) return "/";
  const path = `${url.pathname}${url.search}${url.hash}`;
  return path.startsWith("/") && !path.startsWith("//") ? path : "/";
}
