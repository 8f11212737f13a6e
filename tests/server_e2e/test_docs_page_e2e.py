"""/docs in headless Chromium: the vendored Swagger UI renders every operation of the server's OpenAPI schema
under the server's Content-Security-Policy (it was blank: the CSP blocked Swagger UI from its CDN), with no
request leaving the server."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_docs_page_renders_every_operation_offline(browser, live_server, artifacts) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    elsewhere: list[str] = []
    page.on("request", lambda req: elsewhere.append(req.url) if not req.url.startswith(live_server.url) else None)
    page.goto(f"{live_server.url}/docs")
    page.locator(".opblock").first.wait_for(timeout=60_000)
    import httpx

    operations = sum(len(ops) for path, ops in httpx.get(f"{live_server.url}/openapi.json").json()["paths"].items())
    assert page.locator(".opblock").count() == operations
    assert "medannot review server" in page.inner_text(".information-container")
    artifacts(page, "docs")
    assert [p for p in problems if "sourcemap" not in p.lower()] == [] and elsewhere == [], (problems, elsewhere)
    context.close()
