"""Every /api route x every role, on SQLite and on a real PostgreSQL: 401 anonymous, 404 outside one's
projects, 403 without the role's right, 2xx with it (the role table of medannot.server.security)."""

from __future__ import annotations

import itertools

import pytest
from server_helpers import add_project, add_users, nifti_bytes, run_jobs, synthetic_volume, upload

from medannot.server.security import PERMISSIONS, Action, Role

USERS = ["site", "padmin", "annot", "rev", "outsider"]
ROLE_OF = {"padmin": Role.ADMIN, "annot": Role.ANNOTATOR, "rev": Role.REVIEWER}
counter = itertools.count()


@pytest.fixture(scope="module")
def world(live):
    """Users of every kind, project P (otsu, one annotated case) and project Q that only ``outsider`` is in."""
    add_users(live, USERS, admin={"site"})
    pid = add_project(live, "P", "otsu", {"padmin": "admin", "annot": "annotator", "rev": "reviewer"})
    add_project(live, "Q", "otsu", {"outsider": "admin"})
    c = live.client("padmin")
    r = upload(c, pid, "scan.nii.gz", nifti_bytes(synthetic_volume()))
    assert r.status_code == 201, r.text
    cid = r.json()["cases"][0]["id"]
    assert run_jobs(live) >= 1
    job = c.get(f"/api/cases/{cid}").json()["job"]["id"]
    return {"pid": pid, "cid": cid, "jid": job, "live": live}


def _latest(c, cid):
    return c.get(f"/api/cases/{cid}").json()["latest_version"]


def _mask_of(c, cid):
    v = _latest(c, cid)
    return c.get(v["mask_url"]).content, v["id"]


# (method, path, action or "site" (site admins only) or None (any logged-in user), request maker)
def _req_version(c, w):
    data, vid = _mask_of(c, w["cid"])
    return {"params": {"base_version": vid}, "content": data, "headers": {"Content-Type": "application/octet-stream"}}


def _req_draft(c, w):
    data, _ = _mask_of(c, w["cid"])
    return {"content": data}


def _req_get_draft(c, w):
    c.put(f"/api/cases/{w['cid']}/draft", content=_mask_of(c, w["cid"])[0])
    return {}


def _req_upload(c, w):
    return {"files": {"file": ("more.nii.gz", nifti_bytes(synthetic_volume(seed=next(counter))), "application/octet-stream")}}


ROUTES = [
    ("GET", "/api/me", None, None),
    ("GET", "/api/projects", None, None),
    ("POST", "/api/projects", "site", lambda c, w: {"json": {"name": f"new-{next(counter)}", "model": "otsu"}}),
    ("POST", "/api/users", "site", lambda c, w: {"json": {"username": f"u{next(counter)}", "password": "pw"}}),
    ("GET", "/api/audit", "site", None),
    ("GET", "/api/projects/{pid}", Action.READ, None),
    ("GET", "/api/projects/{pid}/members", Action.MANAGE, None),
    ("PUT", "/api/projects/{pid}/members", Action.MANAGE, lambda c, w: {"json": {"username": "rev", "role": "reviewer"}}),
    ("GET", "/api/projects/{pid}/cases", Action.READ, None),
    ("POST", "/api/projects/{pid}/cases", Action.UPLOAD, _req_upload),
    ("GET", "/api/projects/{pid}/jobs", Action.READ, None),
    ("GET", "/api/projects/{pid}/audit", Action.MANAGE, None),
    ("POST", "/api/projects/{pid}/export", Action.EXPORT, None),
    ("GET", "/api/cases/{cid}", Action.READ, None),
    ("GET", "/api/cases/{cid}/image", Action.READ, None),
    ("GET", "/api/cases/{cid}/versions", Action.READ, None),
    ("GET", "/api/cases/{cid}/versions/{vid}/mask", Action.READ, None),
    ("POST", "/api/cases/{cid}/versions", Action.EDIT, _req_version),
    ("PUT", "/api/cases/{cid}/draft", Action.EDIT, _req_draft),
    ("GET", "/api/cases/{cid}/draft", Action.EDIT, _req_get_draft),
    ("DELETE", "/api/cases/{cid}/draft", Action.EDIT, None),
    ("POST", "/api/cases/{cid}/open", Action.EDIT, None),
    ("POST", "/api/cases/{cid}/accept", Action.REVIEW, lambda c, w: {"json": {"version_id": _latest(c, w["cid"])["id"], "seconds_spent": 3}}),
    ("POST", "/api/cases/{cid}/reject", Action.REVIEW, lambda c, w: {"json": {"reason": "blurred"}}),
    ("POST", "/api/cases/{cid}/jobs", Action.UPLOAD, None),
    ("GET", "/api/jobs/{jid}", Action.READ, None),
    ("POST", "/api/logout", None, None),
]
SCOPED = ("{pid}", "{cid}", "{jid}")


def expected(user: str | None, path: str, action) -> int:  # noqa: ANN001
    if user is None:
        return 401
    if action is None or user == "site":
        return 200
    if action == "site":
        return 403
    if user == "outsider":
        return 404 if any(k in path for k in SCOPED) else 403
    return 200 if action in PERMISSIONS[ROLE_OF[user]] else 403


def _shape(path: str) -> str:
    import re

    return re.sub(r"\{[a-z_]+\}", "{}", path)


def test_every_api_route_is_in_the_table(live):
    paths = live.app.openapi()["paths"]
    served = {(m.upper(), _shape(p)) for p, ops in paths.items() for m in ops if p.startswith("/api/")}
    table = {(m, _shape(p)) for m, p, _, _ in ROUTES}
    assert served - table == {("POST", "/api/login")}, f"routes without an access test: {sorted(served - table)}"
    assert table <= served


@pytest.mark.parametrize("user", [None, *USERS])
@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_route_by_role(world, user, route):
    method, template, action, make = route
    live = world["live"]
    want = expected(user, template, action)
    path = template
    if "{vid}" in path:
        path = path.replace("{vid}", str(_latest(live.client("padmin"), world["cid"])["id"]))
    path = path.format(pid=world["pid"], cid=world["cid"], jid=world["jid"])
    # the request body is prepared by the caller when allowed, else by the project admin
    kwargs = make(live.client(user if want == 200 else "padmin"), world) if make is not None else {}
    r = live.client(user).request(method, path, **kwargs)
    ok = 200 <= r.status_code < 300 if want == 200 else r.status_code == want
    assert ok, f"{user} {method} {path}: expected {want}, got {r.status_code} {r.text[:200]}"
    if template == "/api/logout" and user is not None:
        assert live.client(user).get("/api/me").status_code == 401  # that token is gone
        live.login(user)


def test_wrong_and_expired_tokens_get_401(world):
    live = world["live"]
    import httpx

    for header in ({"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        assert httpx.get(live.url + "/api/me", headers=header).status_code == 401
    assert httpx.post(live.url + "/api/login", json={"username": "rev", "password": "wrong"}).status_code == 401
    from datetime import timedelta

    from sqlalchemy import update

    from medannot.server.models import Token, utcnow
    from medannot.server.security import token_digest

    token = httpx.post(live.url + "/api/login", json={"username": "rev", "password": "s3cret-pw"}).json()["token"]
    assert httpx.get(live.url + "/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with live.db.write() as s:  # the database holds only the token's HMAC; age it past its expiry
        s.execute(update(Token).where(Token.token_hash == token_digest(token, live.app.state.ctx.secret))
                  .values(expires=utcnow() - timedelta(seconds=1)))
    assert httpx.get(live.url + "/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert httpx.post(live.url + "/api/login", json={"username": "ghost", "password": "x"}).status_code == 401


def test_public_paths_need_no_token(world):
    import httpx

    live = world["live"]
    assert httpx.get(live.url + "/health").json() == {"status": "ok"}
    for path in ("/", "/login"):
        r = httpx.get(live.url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
