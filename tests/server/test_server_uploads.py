"""Upload safety: only medical images, no '..' or absolute archive paths, bounded file counts and inflated
sizes (zip bombs), DICOM folders in a zip become one case; request bodies bounded (413)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from server_helpers import add_project, add_users, nifti_bytes, start_server, synthetic_volume, upload

from medannot.errors import InputError
from medannot.server.uploads import ArchiveLimits, display_name, prepare_upload

LIMITS = ArchiveLimits(max_files=10, max_bytes=2_000_000)


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("member", ["../evil.nii.gz", "/etc/evil.nii.gz", "a/../../evil.nii.gz", "C:/evil.nii.gz", "..\\evil.nii.gz"])
def test_archive_paths_outside_are_refused(member):
    with pytest.raises(InputError, match="absolute or '..' path"):
        prepare_upload("x.zip", _zip({member: nifti_bytes(synthetic_volume())}), LIMITS)


def test_zip_bomb_is_refused_while_inflating():
    bomb = _zip({"a.nii": b"\0" * 3_000_000})  # compresses to a few kB, inflates past the limit
    assert len(bomb.getvalue()) < 20_000
    with pytest.raises(InputError, match="uncompressed|inflates"):
        prepare_upload("bomb.zip", bomb, LIMITS)


def test_lying_zip_header_is_caught_by_counting(monkeypatch):
    data = _zip({"a.nii": b"\0" * 3_000_000})
    raw = bytearray(data.getvalue())
    # declare a tiny uncompressed size in the central directory: the real inflated size is counted anyway
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.infolist()[0]
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24 : cd + 28] = (100).to_bytes(4, "little")
    with pytest.raises((InputError, zipfile.BadZipFile)):
        prepare_upload("liar.zip", io.BytesIO(bytes(raw)), LIMITS)
    assert info.file_size == 3_000_000


def test_too_many_files_are_refused():
    members = {f"f{i}.nii.gz": nifti_bytes(synthetic_volume(shape=(4, 4, 4))) for i in range(11)}
    with pytest.raises(InputError, match="more than the 10 allowed"):
        prepare_upload("many.zip", _zip(members), LIMITS)


@pytest.mark.parametrize("name,data", [
    ("page.html", b"<html><script>alert(1)</script></html>"),
    ("notes.txt", b"hello"),
    ("fake.nii.gz", b"<html>not nifti</html>"),
])
def test_non_images_are_refused(name, data):
    with pytest.raises(InputError):
        prepare_upload(name, io.BytesIO(data), LIMITS)


def test_archive_with_a_non_image_member_is_refused():
    with pytest.raises(InputError, match="not a medical image"):
        prepare_upload("mixed.zip", _zip({"ok.nii.gz": nifti_bytes(synthetic_volume()), "readme": b"text"}), LIMITS)


def test_archive_of_images_and_a_dicom_series(tmp_path):
    from iohelpers import write_dicom_series

    volume = (np.arange(6 * 5 * 4).reshape(6, 5, 4) % 50).astype(np.int16)
    paths = write_dicom_series(tmp_path / "series", volume, (1, 0, 0), (0, 1, 0))
    members = {f"study/series1/{p.name}": p.read_bytes() for p in paths}
    members["other/scan.nii.gz"] = nifti_bytes(synthetic_volume())
    members["__MACOSX/._scan.nii.gz"] = b"junk the Mac adds"
    cases = prepare_upload("study.zip", _zip(members), LIMITS)
    assert sorted((c.name, c.source_format) for c in cases) == [("scan", "nifti"), ("series1", "dicom-series")]
    series = next(c for c in cases if c.source_format == "dicom-series")
    assert series.image.spatial_shape == (6, 5, 4) and series.source_zip is not None
    with zipfile.ZipFile(io.BytesIO(series.source_zip)) as zf:
        assert sorted(zf.namelist()) == [f"{i:05d}.dcm" for i in range(4)]


def test_display_names_are_sanitised():
    assert display_name("../../etc/passwd.nii.gz") == "passwd"
    assert display_name("<script>x</script>.png") == "script"  # the last path part, without < >
    assert display_name("...") == "case"


def test_request_bodies_over_the_limit_get_413(tmp_path):
    live = start_server(tmp_path, max_upload_bytes=50_000)
    try:
        add_users(live, ["big"])
        pid = add_project(live, "big", "otsu", {"big": "admin"})
        too_big = nifti_bytes((np.random.default_rng(0).random((40, 40, 40)) * 1000).astype(np.int16))
        assert len(too_big) > 50_000
        r = upload(live.client("big"), pid, "big.nii.gz", too_big)
        assert r.status_code == 413
        r = upload(live.client("big"), pid, "page.html", b"<html></html>")
        assert r.status_code == 422 and "not a medical image" in r.json()["detail"]
        r = upload(live.client("big"), pid, "small.nii.gz", nifti_bytes(synthetic_volume(shape=(8, 8, 8))))
        assert r.status_code == 201
        assert live.client("big").get(f"/api/projects/{pid}/cases").json()[0]["name"] == "small"
    finally:
        live.stop()
