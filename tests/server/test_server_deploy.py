"""Deployment (issue 14): the secret from a file or MEDANNOT_SECRET (--secret warned about), TLS, the Host
allow-list against DNS rebinding, private data files (0600/0700), /docs from the vendored Swagger UI under
the server's CSP, bounded job retries when workers die, and no open redirect after login."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from server_helpers import add_project, add_users, free_port, nifti_bytes, run_jobs, start_server, synthetic_volume, upload
from sqlalchemy import update

from medannot.server import jobs as queue
from medannot.server.middleware import host_allowed
from medannot.server.models import Job, utcnow

MEDANNOT = str(Path(sys.executable).with_name("medannot"))
SECRET = "0123456789abcdef0123456789abcdef"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- serve's options


@pytest.fixture
def serve_cli(monkeypatch):
    """Run `medannot serve ...` in this process with uvicorn.run replaced: returns (result, uvicorn kwargs, app)."""
    import uvicorn
    from typer.testing import CliRunner

    from medannot.cli import app

    seen: dict = {}

    def fake_run(asgi, **kwargs):  # noqa: ANN001
        seen.update(kwargs, app=asgi)

    monkeypatch.setattr(uvicorn, "run", fake_run)

    def invoke(*args: str, env: dict | None = None):  # noqa: ANN202
        seen.clear()
        umask = os.umask(0o022)  # serve sets the process umask; keep this test process's
        try:
            result = CliRunner().invoke(app, ["serve", "--no-worker", *args], env=env or {})
        finally:
            os.umask(umask)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result, dict(seen)

    return invoke


def test_secret_from_a_file_or_the_environment_and_a_warning_for_secret(serve_cli, tmp_path):
    data = str(tmp_path / "d")
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    result, seen = serve_cli("--data", data, "--secret-file", str(secret_file))
    assert result.exit_code == 0 and seen["app"].state.ctx.secret == SECRET and "warning" not in result.stderr
    result, seen = serve_cli("--data", data, env={"MEDANNOT_SECRET": "f" * 32})
    assert result.exit_code == 0 and seen["app"].state.ctx.secret == "f" * 32
    result, seen = serve_cli("--data", data, "--secret", SECRET)
    assert result.exit_code == 0 and seen["app"].state.ctx.secret == SECRET
    assert "/proc" in result.stderr and "--secret-file" in result.stderr  # the command line is visible to every user
    both = serve_cli("--data", data, "--secret", SECRET, env={"MEDANNOT_SECRET": "f" * 32})[0]
    assert both.exit_code == 2 and "give the secret once" in both.stderr
    short = serve_cli("--data", data, env={"MEDANNOT_SECRET": "short"})[0]
    assert short.exit_code == 2 and "shorter than 16" in short.stderr


def test_tls_and_host_options_reach_uvicorn_and_the_app(serve_cli, tmp_path):
    data = str(tmp_path / "d")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    result, seen = serve_cli("--data", data, "--tls-cert", str(cert), "--tls-key", str(key), "--allowed-host", "review.example.org",
                             "--token-hours", "3")
    assert result.exit_code == 0, result.stderr
    assert (seen["ssl_certfile"], seen["ssl_keyfile"]) == (str(cert), str(key)) and "https://" in result.stdout
    settings = seen["app"].state.ctx.settings
    assert "review.example.org" in settings.resolved_allowed_hosts() and "localhost" in settings.resolved_allowed_hosts()
    assert settings.token_hours == 3
    half = serve_cli("--data", data, "--tls-cert", str(cert))[0]
    assert half.exit_code == 2 and "both --tls-cert and --tls-key" in half.stderr
    missing = serve_cli("--data", data, "--tls-cert", str(cert), "--tls-key", str(tmp_path / "nope.pem"))[0]
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    assert subprocess.run([MEDANNOT, "users", "add", "root", "--password-stdin", "--admin", "--data", data],
                          input="a long password\n", text=True, capture_output=True).returncode == 0
    public, seen = serve_cli("--data", data, "--host", "0.0.0.0", "--secret-file", str(_secret(tmp_path)))
    assert public.exit_code == 0 and "plain HTTP" in public.stderr and "--allowed-host" in public.stderr
    assert seen["app"].state.ctx.settings.resolved_allowed_hosts() == ["*"]


def _secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


@pytest.mark.slow
def test_serve_speaks_tls_with_the_given_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                           "-days", "1", "-subj", "/CN=localhost"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    port = free_port()
    proc = subprocess.Popen([MEDANNOT, "serve", "--port", str(port), "--data", str(tmp_path / "d"), "--no-worker",
                             "--tls-cert", str(cert), "--tls-key", str(key)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import ssl

    trust = ssl.create_default_context(cafile=str(cert))
    trust.check_hostname = False  # the certificate names localhost; we connect to 127.0.0.1
    try:
        for _ in range(600):
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/health", verify=trust, timeout=1)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        else:
            raise AssertionError("the TLS server did not answer")
        assert r.json() == {"status": "ok"} and r.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)  # no plain HTTP on that port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        proc.stderr.close()


# --------------------------------------------------------------------------- Host allow-list


def test_host_patterns():
    allowed = ["localhost", "127.0.0.1", "::1", "*.example.org"]
    for host in ("localhost", "LOCALHOST:8000", "127.0.0.1:5", "[::1]:8000", "[::1]", "a.example.org", "b.a.example.org:443"):
        assert host_allowed(host, allowed), host
    for host in ("evil.test", "localhost.evil.test", "example.org", "127.0.0.2", "[::2]:80", "", "xexample.org"):
        assert not host_allowed(host, allowed), host
    assert host_allowed("anything", ["*"])


def test_dns_rebinding_is_refused_with_400(live):
    port = live.url.rsplit(":", 1)[1]
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io"):
        r = httpx.get(live.url + "/api/projects", headers={"Host": host})
        assert r.status_code == 400 and "host not allowed" in r.text, host  # was: served (a rebinding page reached it)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert httpx.get(live.url + "/health", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_off_loopback(tmp_path):
    live = start_server(tmp_path, host="0.0.0.0", secret=SECRET, allowed_hosts=["review.example.org", "127.0.0.1"])
    try:
        assert httpx.get(live.url + "/health", headers={"Host": "review.example.org"}).status_code == 200
        assert httpx.get(live.url + "/health", headers={"Host": "localhost"}).status_code == 400
    finally:
        live.stop()


# --------------------------------------------------------------------------- files


def test_data_files_are_private(live):
    data = Path(live.settings.data_dir)
    add_users(live, ["perm"])
    pid = add_project(live, "perm", "otsu", {"perm": "admin"})
    assert upload(live.client("perm"), pid, "p.nii.gz", nifti_bytes(synthetic_volume(seed=5))).status_code == 201
    blobs = [p for p in (data / "blobs").rglob("*") if p.is_file()]
    assert blobs and all(mode(p) == 0o600 for p in blobs), sorted({oct(mode(p)) for p in blobs})  # were 0644
    folders = [data, data / "blobs", *(p for p in (data / "blobs").rglob("*") if p.is_dir())]
    assert all(mode(p) == 0o700 for p in folders), sorted({oct(mode(p)) for p in folders})
    if live.db.is_sqlite:
        for name in ("medannot.db", "medannot.db-wal", "server.secret"):
            assert mode(data / name) == 0o600, (name, oct(mode(data / name)))  # the database was 0644


# --------------------------------------------------------------------------- /docs


def test_docs_are_served_from_vendored_assets(live):
    r = httpx.get(live.url + "/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "http" not in csp  # no CDN allowed, none needed
    assert "<script>" not in r.text and "cdn" not in r.text.lower()  # no inline script (the CSP forbids it)
    for asset in ("/static/vendor/swagger-ui/swagger-ui-bundle.js", "/static/vendor/swagger-ui/swagger-ui.css", "/static/docs.js"):
        assert asset in r.text or asset == "/static/docs.js"
        got = httpx.get(live.url + asset)
        assert got.status_code == 200 and len(got.content) > 100, asset
    licence = Path(__file__).resolve().parents[2] / "src/medannot/server/static/vendor/swagger-ui/LICENSE"
    assert "Apache License" in licence.read_text()
    assert httpx.get(live.url + "/openapi.json").json()["info"]["title"] == "medannot review server"


# --------------------------------------------------------------------------- jobs


def test_a_job_whose_workers_keep_dying_fails_with_the_reason(live):
    """Claimed three times by workers that died (leases ran out): failed, not re-claimed forever."""
    add_users(live, ["dying"])
    pid = add_project(live, "dying", "otsu", {"dying": "admin"})
    run_jobs(live)  # the server is shared: finish other modules' jobs first
    r = upload(live.client("dying"), pid, "d.nii.gz", nifti_bytes(synthetic_volume(seed=9)))
    job_id = r.json()["cases"][0]["job"]["id"]
    for attempt in range(1, 4):
        with live.db.write() as s:
            claimed = queue.claim(s, f"dead-worker-{attempt}", 30.0, max_attempts=3)
            assert claimed is not None and claimed.id == job_id and claimed.attempts == attempt
        with live.db.write() as s:  # the worker was killed: its lease runs out
            s.execute(update(Job).where(Job.id == job_id).values(lease_expires=utcnow() - timedelta(seconds=1)))
    with live.db.write() as s:
        assert queue.claim(s, "next-worker", 30.0, max_attempts=3) is None
    job = live.client("dying").get(f"/api/jobs/{job_id}").json()
    assert job["state"] == "failed" and job["attempts"] == 3
    assert "stopped" in job["message"] and "3 tries" in job["message"] and "dead-worker-3" in job["message"]


# --------------------------------------------------------------------------- login redirect


@pytest.mark.parametrize("target", ["/%5Cevil.example/phish", "//evil.example/x", "https://evil.example/", "/%09/evil.example",
                                    "javascript:alert(1)", "/\\evil.example"])
def test_login_page_refuses_off_site_next(live, target):
    r = httpx.get(f"{live.url}/login?next={target}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login", target


def test_login_page_keeps_a_local_next(live):
    r = httpx.get(f"{live.url}/login?next=%2F%3Fcase%3D3%23v2", follow_redirects=False)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")


def node() -> str:
    """The Node.js that ships inside the playwright package (a dev dependency), else one on PATH."""
    import shutil

    import playwright

    bundled = Path(playwright.__file__).parent / "driver" / "node"
    found = str(bundled) if bundled.is_file() else shutil.which("node")
    assert found, "no Node.js: install the dev extras (playwright ships one)"
    return found


def test_page_sends_users_only_to_paths_of_this_server(tmp_path):
    """The login page's own check (static/next.js), run by Node with the same URL rules as the browser."""
    module = Path(__file__).resolve().parents[2] / "src/medannot/server/static/next.js"
    # the page reads `next` decoded: /login?next=/%5Chost/phish gives "/\\host/phish", which browsers send to "host"
    cases = {"/%5Chost/phish": "/%5Chost/phish", "/\\host/phish": "/", "//host/x": "/", "/\t/host": "/", "https://host/": "/",
             "javascript:alert(1)": "/", "": "/", None: "/", "/?case=3#v2": "/?case=3#v2", "/login": "/login",
             "/a/../b": "/b"}
    script = tmp_path / "check.mjs"
    script.write_text(f"import {{ safeNext }} from {json.dumps(module.as_uri())};\n"
                      f"const cases = {json.dumps([[k, v] for k, v in cases.items()])};\n"
                      "const out = cases.map(([raw, want]) => [raw, safeNext(raw, 'http://127.0.0.1:8000'), want]);\n"
                      "console.log(JSON.stringify(out));\n")
    done = subprocess.run([node(), str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for raw, got, want in json.loads(done.stdout):
        assert got == want, (raw, got, want)
    # what the browser does with "/\\host" when it is not checked: another origin (the finding)
    probe = tmp_path / "probe.mjs"
    probe.write_text("console.log(new URL('/\\\\host/phish', 'http://127.0.0.1:8000').host);\n")
    assert subprocess.run([node(), str(probe)], capture_output=True, text=True, timeout=60).stdout.strip() == "host"
