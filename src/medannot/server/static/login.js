// The login form: POST /api/login, keep the token in sessionStorage, go back to the page that sent us here.
import { login, ApiError } from "./api.js";
import { safeNext } from "./next.js";

const form = document.getElementById("login-form");
const errorBox = document.getElementById("login-error");

/** Where to go after logging in: the `next` parameter when it is a path on this server, else the review page. */
function nextPage() {
  return safeNext(new URLSearchParams(location.search).get("next"), location.origin);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.hidden = true;
  const button = document.getElementById("login-button");
  button.disabled = true;
  try {
    await login(document.getElementById("username").value, document.getElementById("password").value);
    location.assign(nextPage());
  } catch (err) {
    errorBox.textContent = err instanceof ApiError && (err.status === 401 || err.status === 403)
      ? "Wrong user name or password."
      : `Could not log in: ${err.message}`;
    errorBox.hidden = false;
  } finally {
    button.disabled = false;
  }
});
