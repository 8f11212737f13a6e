"""Hostile input never takes the server down (issue 14): gzip bombs in masks, drafts and uploads are stopped
at what the case grid or the limits allow (memory measured with tracemalloc) and masks are stored re-encoded;
bodies are bounded before parsing (JSON, chunked uploads, login), authentication comes first, non-finite
numbers and out-of-range ids are refused, zips that lie are 4xx, and no answer carries a server path or
echoes its input."""

from __future__ import annotations

import functools
import gzip
import io
import json
import struct
import tracemalloc
import zipfile
import zlib

import httpx
import nibabel as nib
import numpy as np
import pytest
from server_helpers import add_project, add_users, nifti_bytes, read_mask, run_jobs, start_server, synthetic_volume, upload
from sqlalchemy import update

from medannot.server.models import CaseRecord

MiB = 1 << 20
SHAPE = (24, 20, 12)


@functools.lru_cache(maxsize=8)
def gz_stream(*parts: bytes | int) -> bytes:
    """gzip of the parts in order; an int part is that many zero bytes (compressed without ever holding them)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = []
    block = b"\0" * (8 * MiB)
    for part in parts:
        if isinstance(part, int):
            n = part
            while n > 0:
                out.append(c.compress(block[: min(n, len(block))]))
                n -= len(block)
        else:
            out.append(c.compress(part))
    out.append(c.flush())
    return b"".join(out)


def header(shape: tuple[int, ...], dtype: type) -> bytes:
    """A NIfTI-1 single-file header (352 bytes, identity affine) declaring ``shape`` and ``dtype``."""
    h = nib.Nifti1Header()
    h.set_data_shape(shape)
    h.set_data_dtype(dtype)
    h.set_qform(np.eye(4), code=1)
    h.set_sform(np.eye(4), code=2)
    h["vox_offset"] = 352
    return h.binaryblock + b"\0" * 4


def valid_mask() -> tuple[np.ndarray, bytes]:
    m = np.zeros(SHAPE, np.uint8)
    m[2:6, 3:7, 4:8] = 1
    return m, nib.Nifti1Image(m, np.eye(4)).to_bytes()


def measured(call):  # noqa: ANN001, ANN201
    """(result of call(), peak bytes traced by tracemalloc in this process, the server thread included)."""
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture(scope="module")
def world(live):
    add_users(live, ["h-admin", "h-ann"])
    pid = add_project(live, "hostile", "otsu", {"h-admin": "admin", "h-ann": "annotator"})
    r = upload(live.client("h-admin"), pid, "v.nii.gz", nifti_bytes(synthetic_volume(SHAPE, seed=7)))
    assert r.status_code == 201, r.text
    run_jobs(live)
    return {"live": live, "pid": pid, "cid": r.json()["cases"][0]["id"]}


def _open(world):
    with world["live"].db.write() as s:  # other tests may have accepted it: edits need it open
        s.execute(update(CaseRecord).where(CaseRecord.id == world["cid"]).values(status="in_review"))


def _latest(c, cid):
    return c.get(f"/api/cases/{cid}").json()["latest_version"]


def test_mask_gzip_bomb_stops_at_the_case_grid(world):
    """1 GiB of zeros behind a header declaring the case grid: only the grid's 5,760 voxels are inflated."""
    _open(world)
    c, cid = world["live"].client("h-admin"), world["cid"]
    bomb = gz_stream(header(SHAPE, np.uint8), 1 << 30)
    assert len(bomb) < 2 * MiB
    base = _latest(c, cid)["id"]
    r, peak = measured(lambda: c.post(f"/api/cases/{cid}/versions", params={"base_version": base}, content=bomb))
    assert r.status_code == 201, r.text
    assert peak < 64 * MiB, f"server traced {peak / MiB:.0f} MiB for a 1 GiB bomb"  # was > 1 GiB (gzip.decompress)
    stored = c.get(r.json()["mask_url"]).content
    assert len(stored) < 2000 and stored != bomb  # re-encoded by the server, not the bytes as sent
    np.testing.assert_array_equal(read_mask(stored), np.zeros(SHAPE, np.uint8))


def test_mask_declaring_another_grid_is_refused_before_inflating(world):
    """An int16 512^3 mask (256 MiB inflated) for a 24x20x12 case: refused from its header."""
    c, cid = world["live"].client("h-admin"), world["cid"]
    bomb = gz_stream(header((512, 512, 512), np.int16), 2 * 512**3)
    r, peak = measured(lambda: c.post(f"/api/cases/{cid}/versions", content=bomb))
    assert r.status_code == 422 and "shape [512, 512, 512] is not the image's [24, 20, 12]" in r.json()["detail"]
    assert peak < 16 * MiB, f"{peak / MiB:.0f} MiB"  # was 0.5 GB (read whole, then compared)


def test_valid_mask_followed_by_a_gigabyte_is_stored_re_encoded(world):
    _open(world)
    c, cid = world["live"].client("h-admin"), world["cid"]
    array, raw = valid_mask()
    sent = gz_stream(raw, 1 << 30)
    r, peak = measured(lambda: c.post(f"/api/cases/{cid}/versions", params={"base_version": _latest(c, cid)["id"]},
                                      content=sent))
    assert r.status_code == 201, r.text
    assert peak < 64 * MiB
    stored = c.get(r.json()["mask_url"]).content
    assert len(stored) < 2000, f"stored {len(stored)} bytes: the trailing gigabyte was kept"  # was stored as sent (1 MiB)
    np.testing.assert_array_equal(read_mask(stored), array)
    assert gzip.decompress(stored)[:4] == struct.pack("<i", 348)


def test_draft_bomb_is_bounded_and_re_encoded(world):
    _open(world)
    c, cid = world["live"].client("h-admin"), world["cid"]
    r, peak = measured(lambda: c.put(f"/api/cases/{cid}/draft", content=gz_stream(header(SHAPE, np.uint8), 1 << 30)))
    assert r.status_code == 204, r.text
    assert peak < 64 * MiB
    assert len(c.get(f"/api/cases/{cid}/draft").content) < 2000
    c.delete(f"/api/cases/{cid}/draft")


@pytest.mark.parametrize("body,match", [
    (gz_stream(header(SHAPE, np.uint8), 100), "truncated"),                  # fewer voxels than declared
    (b"\x1f\x8b" + b"\0" * 50, "gzip"),                                        # a broken gzip stream
    (header((24, 20, 12, 2), np.uint8) + b"\0" * 11520, "one label channel"),  # two channels
    (b"not a nifti file at all, but long enough to hold a header " * 10, "not a NIfTI"),
])
def test_broken_masks_are_one_line_422(world, body, match):
    _open(world)
    c, cid = world["live"].client("h-admin"), world["cid"]
    r = c.post(f"/api/cases/{cid}/versions", content=body)
    assert r.status_code == 422 and match in r.json()["detail"], r.text
    assert "\n" not in r.json()["detail"] and "/tmp" not in r.text


def test_upload_bomb_is_refused_from_its_header(world):
    """A 256 KiB .nii.gz declaring 512^3 int16 (was accepted): refused for its ratio before any voxel is read."""
    c = world["live"].client("h-admin")
    bomb = gz_stream(header((512, 512, 512), np.int16), 2 * 512**3)
    r, peak = measured(lambda: upload(c, world["pid"], "bomb.nii.gz", bomb))
    assert r.status_code == 422 and "ratio" in r.json()["detail"] and "bomb.nii.gz" in r.json()["detail"], r.text
    assert peak < 32 * MiB, f"{peak / MiB:.0f} MiB"


def test_upload_larger_than_the_image_limit_is_refused(tmp_path):
    live = start_server(tmp_path, max_image_bytes=100_000)
    try:
        add_users(live, ["big-img"])
        pid = add_project(live, "big-img", "otsu", {"big-img": "admin"})
        noise = (np.random.default_rng(0).random((64, 64, 16)) * 1000).astype(np.int16)  # 128 KiB of voxels, ratio ~1.3
        r = upload(live.client("big-img"), pid, "large.nii.gz", nifti_bytes(noise))
        assert r.status_code == 422 and "more than the 97.7 KiB allowed" in r.json()["detail"], r.text
        assert upload(live.client("big-img"), pid, "ok.nii.gz", nifti_bytes(synthetic_volume(SHAPE))).status_code == 201
    finally:
        live.stop()


def _zip_with(field_offset: int, value: int, fmt: str = "<H") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("scan.nii.gz", nifti_bytes(synthetic_volume(SHAPE)))
    raw = bytearray(buf.getvalue())
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into(fmt, raw, cd + field_offset, value)
    local = {8: 6, 10: 8, 24: 22}[field_offset]
    struct.pack_into(fmt, raw, local, value)
    return bytes(raw)


@pytest.mark.parametrize("name,data,match", [
    ("declared-small.zip", _zip_with(24, 100, "<I"), "damaged"),           # declared size smaller than the member
    ("declared-large.zip", _zip_with(24, 10**6, "<I"), "declares 1000000"),  # declared size larger
    ("encrypted.zip", _zip_with(8, 0x1), "encrypted"),
    ("aes.zip", _zip_with(10, 99), "compression method 99"),
])
def test_zips_that_lie_are_4xx_not_500(world, name, data, match):
    r = upload(world["live"].client("h-admin"), world["pid"], name, data)
    assert r.status_code == 422 and match in r.json()["detail"], r.text


def test_authentication_comes_before_the_body(world):
    live = world["live"]
    block = b"x" * (64 * 1024)

    def body():
        yield b'{"name": "'
        for _ in range(14):
            yield block

    (status, _), peak = measured(lambda: raw_post(live.url, "/api/projects", 10 + 14 * len(block), body()))
    assert status == 401
    assert peak < 2 * MiB  # the body was never read, let alone parsed


def raw_post(url: str, path: str, declared: int, chunks, timeout: float = 60) -> tuple[int, bytes]:  # noqa: ANN001
    """POST over a plain socket with a declared Content-Length, sending ``chunks`` until the server has answered.

    Returns the status and the answer's body (the server may answer before reading the body at all).
    """
    import select
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {declared}\r\nConnection: close\r\n\r\n".encode())
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                readable, writable, _ = select.select([sock], [sock], [], timeout)
                if readable:  # the server answered: stop sending
                    break
                if writable:
                    try:
                        view = view[sock.send(view):]
                    except OSError:
                        break
            else:
                continue
            break
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < 20:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_json_and_login_bodies_are_bounded(world):
    """300 MiB of JSON to /api/login took the server from 0.29 to 1.2 GB before its 422; now a 413 from the header."""
    live = world["live"]
    block = b"a" * MiB

    def body():
        yield b'{"username": "x", "password": "'
        for _ in range(300):
            yield block

    (status, answer), peak = measured(lambda: raw_post(live.url, "/api/login", 300 * MiB + 40, body()))
    assert status == 413 and b"16384" in answer
    assert peak < 8 * MiB, f"{peak / MiB:.0f} MiB"
    (status, _), peak = measured(lambda: raw_post(live.url, "/api/projects", 300 * MiB, body()))
    assert status == 413 and peak < 8 * MiB  # every JSON route: max_json_bytes (1 MiB)
    c = live.client("h-admin")
    r = c.post("/api/projects", content=b'{"name": "' + b"x" * (2 * MiB) + b'"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_chunked_bodies_over_the_limit_get_413(tmp_path):
    live = start_server(tmp_path, max_upload_bytes=50_000)
    try:
        add_users(live, ["chunky"])
        pid = add_project(live, "chunky", "otsu", {"chunky": "admin"})

        def chunks():  # no Content-Length: sent with Transfer-Encoding: chunked
            for _ in range(40):
                yield b"\0" * 4096

        c = live.client("chunky")
        r = c.post(f"/api/projects/{pid}/cases", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert r.status_code == 413, r.text
        r = c.post("/api/cases/1/versions", content=chunks())
        assert r.status_code == 413, r.text
        assert c.get("/api/me").status_code == 200  # still serving
    finally:
        live.stop()


@pytest.mark.parametrize("seconds", ["1e999", "-1e999", "NaN", "Infinity", "1e12"])
def test_non_finite_or_absurd_seconds_are_refused(world, seconds):
    _open(world)
    c, cid = world["live"].client("h-admin"), world["cid"]
    body = f'{{"version_id": {_latest(c, cid)["id"]}, "seconds_spent": {seconds}}}'
    r = c.post(f"/api/cases/{cid}/accept", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text


def test_export_manifest_is_always_json(world):
    live, cid = world["live"], world["cid"]
    _open(world)
    c = live.client("h-admin")
    assert c.post(f"/api/cases/{cid}/accept", json={"version_id": _latest(c, cid)["id"], "seconds_spent": 5}).status_code == 200
    if live.db.is_sqlite:  # a row written before non-finite numbers were refused (PostgreSQL's JSON never held one)
        with live.db.write() as s:
            s.execute(update(CaseRecord).where(CaseRecord.id == cid).values(effort={"dice": 1.0, "seconds": float("inf")}))
        assert c.get(f"/api/cases/{cid}").json()["effort"]["seconds"] is None
    r = c.post(f"/api/projects/{world['pid']}/export")
    assert r.status_code == 200

    def strict(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"), parse_constant=strict)
    assert manifest["cases"][0]["effort"]["seconds"] == (None if live.db.is_sqlite else 5)


@pytest.mark.parametrize("path", ["/api/cases/{big}", "/api/cases/{big}/versions", "/api/projects/{big}", "/api/jobs/{big}",
                                  "/api/projects/{big}/cases", "/api/cases/{cid}/versions/{big}/mask", "/api/cases/-1",
                                  "/api/projects/0"])
@pytest.mark.parametrize("big", [2**63, 2**64 + 5, 2**31])
def test_out_of_range_ids_are_4xx(world, path, big):
    r = world["live"].client("h-admin").get(path.format(big=big, cid=world["cid"]))
    assert r.status_code in (404, 422), r.text


def test_out_of_range_ids_in_query_and_body_are_422(world):
    c, cid = world["live"].client("h-admin"), world["cid"]
    assert c.post(f"/api/cases/{cid}/versions", params={"base_version": 2**63}, content=b"x").status_code == 422
    assert c.post(f"/api/cases/{cid}/accept", json={"version_id": 2**63}).status_code == 422


def test_long_idempotency_keys_are_400(world):
    c = world["live"].client("h-admin")
    r = c.post(f"/api/cases/{world['cid']}/jobs", headers={"Idempotency-Key": "k" * 201})
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["detail"]
    r = upload(c, world["pid"], "v.nii.gz", nifti_bytes(synthetic_volume(SHAPE)), key="k" * 5000)
    assert r.status_code == 400


def test_messages_carry_no_server_path_and_never_echo_input(world):
    live = world["live"]
    c = live.client("h-admin")
    truncated = nifti_bytes(synthetic_volume(SHAPE))[:300]
    for name, data in (("cut.nii.gz", truncated), ("cut.dcm", b"\0" * 128 + b"DICM" + b"\x02\x00"), ("bad.png", b"\x89PNG\r\n")):
        r = upload(c, world["pid"], name, data)
        assert r.status_code == 422, r.text
        assert "/tmp" not in r.text and str(live.settings.data_dir) not in r.text and "medannot-upload" not in r.text, r.text
    secret = "p" * 2000
    r = httpx.post(live.url + "/api/login", json={"username": "h-admin", "password": secret})
    assert r.status_code == 422 and secret[:100] not in r.text  # FastAPI's default echoed the 2,000 characters


def test_deeply_nested_json_is_a_4xx(world):
    c = world["live"].client("h-admin")
    r = c.post("/api/projects", content=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    r = c.post("/api/projects", content=b'{"name": "deep", "model": "otsu", "labels": [{"value": NaN}]}',
               headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text


def test_public_messages_keep_names_not_paths():
    from medannot.errors import InputError
    from medannot.server.middleware import public_message

    assert public_message("cannot read /tmp/medannot-upload-x1/upload.nii.gz (truncated)") == "cannot read upload.nii.gz (truncated)"
    assert public_message(InputError("bad header", "/srv/data/blobs/ab/abc.nii.gz")) == "abc.nii.gz: bad header"
    assert public_message("use letters/digits/dots; C:\\Users\\x\\f.nii is gone") == "use letters/digits/dots; f.nii is gone"
    assert public_message("first line\nsecond line with /etc/passwd") == "first line"
