"""Every /api route x every role, on SQLite and on a real PostgreSQL: 401 anonymous, 404 outside one's
projects, 403 without the role's right, 2xx with it (the role table of medannot.server.security)."""

from __future__ import annotations

import itertools

import pytest
from server_helpers import PASSWORD, add_project, add_users, nifti_bytes, run_jobs, synthetic_volume, upload
from sqlalchemy import update

from medannot.server import accounts, store
from medannot.server.models import CaseRecord, Project
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
    with live.db.write() as s:
        uid = store.add_user(s, "victim", PASSWORD).id
    return {"pid": pid, "cid": cid, "jid": job, "live": live, "uid": uid}


def _set_status(w, status):
    """Put the case in ``status`` directly in the database (routes that need it open, or locked, find it so)."""
    with w["live"].db.write() as s:
        s.execute(update(CaseRecord).where(CaseRecord.id == w["cid"]).values(status=status))


def _open(maker):
    def wrapped(c, w):
        _set_status(w, "in_review")
        return maker(c, w) if maker is not None else {}
    return wrapped


def _victim(c, w):
    """A user to delete (created again when an earlier call deleted it)."""
    with w["live"].db.write() as s:
        user = accounts.find_user(s, "victim") or store.add_user(s, "victim", PASSWORD)
        w["uid"] = user.id
    return {}


def _member(c, w):
    """A member to remove from project P (added again when an earlier call removed it)."""
    with w["live"].db.write() as s:
        user = accounts.find_user(s, "extra") or store.add_user(s, "extra", PASSWORD)
        store.set_member(s, s.get(Project, w["pid"]), user, "annotator")
    return {}


def _locked(c, w):
    _set_status(w, "rejected")
    return {"json": {"reason": "second look"}}


def _latest(c, cid):
    return c.get(f"/api/cases/{cid}").json()["latest_version"]


def _mask_of(c, cid):
    v = _latest(c, cid)
    return c.get(v["mask_url"]).content, v["id"]


CLICK = {"kind": "point", "point": [10.0, 8.0, 5.0], "positive": True, "label": 1}
"""A click inside the bright block of the synthetic volume (identity affine: mm = voxel)."""


def _session(c, w):
    """A Smart-tool session with one click (made by the project admin), to undo."""
    r = w["live"].client("padmin").post(f"/api/cases/{w['cid']}/interactions", json=CLICK)
    assert r.status_code == 200, r.text
    return {"json": {"session": int(r.headers["X-Session"])}}


def _trainable(w):
    """Project P with three accepted cases (one validates) and no training job waiting, so a round can be queued."""
    from sqlalchemy import select

    from medannot.server.models import Job

    with w["live"].db.write() as s:
        main = s.get(CaseRecord, w["cid"])
        have = list(s.scalars(select(CaseRecord).where(CaseRecord.project_id == w["pid"], CaseRecord.name.like("trainable-%"))))
        for n in range(len(have), 3):
            s.add(CaseRecord(project_id=w["pid"], name=f"trainable-{n}", status="accepted", image_sha256=main.image_sha256,
                             source_format="nifti", spatial_dims=3, shape=main.shape, affine=main.affine,
                             split="val" if n == 0 else "train"))
        s.execute(update(Job).where(Job.project_id == w["pid"], Job.kind == "train", Job.state.in_(("queued", "running")))
                  .values(state="failed", message="access test: cleared"))
    return {"json": {"note": "access test"}}


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
    ("POST", "/api/users", "site", lambda c, w: {"json": {"username": f"u{next(counter)}", "password": PASSWORD}}),
    ("GET", "/api/users", "site", None),
    ("PUT", "/api/users/{uid}/password", "site", lambda c, w: {"json": {"password": PASSWORD}}),
    ("POST", "/api/users/{uid}/disable", "site", None),
    ("POST", "/api/users/{uid}/enable", "site", None),
    ("DELETE", "/api/users/{uid}", "site", _victim),
    ("POST", "/api/me/password", None, lambda c, w: {"json": {"current_password": PASSWORD, "new_password": PASSWORD}}),
    ("GET", "/api/audit", "site", None),
    ("GET", "/api/projects/{pid}", Action.READ, None),
    ("GET", "/api/projects/{pid}/members", Action.MANAGE, None),
    ("PUT", "/api/projects/{pid}/members", Action.MANAGE, lambda c, w: {"json": {"username": "rev", "role": "reviewer"}}),
    ("DELETE", "/api/projects/{pid}/members/{username}", Action.MANAGE, _member),
    ("GET", "/api/projects/{pid}/cases", Action.READ, None),
    ("POST", "/api/projects/{pid}/cases", Action.UPLOAD, _req_upload),
    ("GET", "/api/projects/{pid}/jobs", Action.READ, None),
    ("GET", "/api/projects/{pid}/audit", Action.MANAGE, None),
    ("POST", "/api/projects/{pid}/export", Action.EXPORT, None),
    ("GET", "/api/cases/{cid}", Action.READ, None),
    ("GET", "/api/cases/{cid}/image", Action.READ, None),
    ("GET", "/api/cases/{cid}/versions", Action.READ, None),
    ("GET", "/api/cases/{cid}/versions/{vid}/mask", Action.READ, None),
    ("POST", "/api/cases/{cid}/versions", Action.EDIT, _open(_req_version)),
    ("PUT", "/api/cases/{cid}/draft", Action.EDIT, _open(_req_draft)),
    ("GET", "/api/cases/{cid}/draft", Action.EDIT, _req_get_draft),
    ("DELETE", "/api/cases/{cid}/draft", Action.EDIT, None),
    ("POST", "/api/cases/{cid}/open", Action.EDIT, None),
    ("POST", "/api/cases/{cid}/accept", Action.REVIEW,
     _open(lambda c, w: {"json": {"version_id": _latest(c, w["cid"])["id"], "seconds_spent": 3}})),
    ("POST", "/api/cases/{cid}/reject", Action.REVIEW, _open(lambda c, w: {"json": {"reason": "blurred"}})),
    ("POST", "/api/cases/{cid}/reopen", Action.REVIEW, _locked),
    ("POST", "/api/cases/{cid}/jobs", Action.UPLOAD, _open(None)),
    ("GET", "/api/jobs/{jid}", Action.READ, None),
    ("GET", "/api/projects/{pid}/models", Action.READ, None),
    ("POST", "/api/projects/{pid}/train", Action.MANAGE, lambda c, w: _trainable(w)),
    ("POST", "/api/projects/{pid}/models/{ref}/activate", Action.MANAGE, None),
    ("GET", "/api/projects/{pid}/settings", Action.READ, None),
    ("PATCH", "/api/projects/{pid}/settings", Action.MANAGE, lambda c, w: {"json": {"strategy": "random"}}),
    ("POST", "/api/projects/{pid}/repropose", Action.UPLOAD, None),
    ("GET", "/api/projects/{pid}/next", Action.READ, _open(None)),
    ("POST", "/api/cases/{cid}/interactions", Action.EDIT, _open(lambda c, w: {"json": CLICK})),
    ("POST", "/api/cases/{cid}/interactions/undo", Action.EDIT, _open(_session)),
    ("GET", "/api/cases/{cid}/interactions", Action.READ, None),
    ("POST", "/api/logout", None, None),
]
SCOPED = ("{pid}", "{cid}", "{jid}")
"""Paths inside a project: an outsider gets 404 there (site-wide paths such as /api/users/{uid} answer 403)."""


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
    # the request body (and the state it needs) is prepared by the caller when allowed, else by the project admin
    kwargs = make(live.client(user if want == 200 else "padmin"), world) if make is not None else {}
    path = template
    if "{vid}" in path:
        path = path.replace("{vid}", str(_latest(live.client("padmin"), world["cid"])["id"]))
    path = path.format(pid=world["pid"], cid=world["cid"], jid=world["jid"], uid=world["uid"], username="extra", ref="base")
    r = live.client(user).request(method, path, **kwargs)
    ok = 200 <= r.status_code < 300 if want == 200 else r.status_code == want
    assert ok, f"{user} {method} {path}: expected {want}, got {r.status_code} {r.text[:200]}"
    if template in ("/api/logout", "/api/me/password") and user is not None and want == 200:
        assert live.client(user).get("/api/me").status_code == 401  # that token is gone (logout, or all after a new password)
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

    token = httpx.post(live.url + "/api/login", json={"username": "rev", "password": PASSWORD}).json()["token"]
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
