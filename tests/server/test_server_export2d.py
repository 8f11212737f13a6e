"""A 2D case end to end with the bundled nuclei model on the real stardist sample: upload a TIFF, the worker
annotates it, a reviewer erases one nucleus and accepts; the export's COCO JSON (read with pycocotools)
and NIfTI labels give back exactly the accepted mask."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from server_helpers import add_project, add_users, nifti_bytes, read_mask, run_jobs, upload


@pytest.fixture(scope="module")
def nuclei_case(live, tmp_path_factory):
    from medannot import samples
    from medannot.data import Image
    from medannot.io import write_image

    add_users(live, ["nr", "nadmin"])  # reviewers may not upload: the project admin does
    pid = add_project(live, "nuclei-2d", "nuclei", {"nr": "reviewer", "nadmin": "admin"})
    crop = samples.nuclei_image().scalar()[:96, samples.NUCLEI_SPLIT_COLUMN : samples.NUCLEI_SPLIT_COLUMN + 128]
    path = write_image(Image.from_spatial(crop), tmp_path_factory.mktemp("nuclei") / "crop.tif")
    r = upload(live.client("nadmin"), pid, "crop.tif", path.read_bytes())
    assert r.status_code == 201, r.text
    assert run_jobs(live) >= 1
    return pid, r.json()["cases"][0]["id"], crop


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")  # pycocotools on numpy 2
def test_nuclei_case_reviewed_and_exported_as_coco(live, nuclei_case):
    from pycocotools.coco import COCO

    pid, cid, crop = nuclei_case
    c = live.client("nr")
    case = c.get(f"/api/cases/{cid}").json()
    assert case["spatial_dims"] == 2 and case["shape"] == [*crop.shape, 1]
    proposal = case["latest_version"]
    assert proposal["model_name"] == "nuclei" and proposal["model_version"]
    mask = read_mask(c.get(proposal["mask_url"]).content)
    assert mask.shape == (*crop.shape, 1) and set(np.unique(mask)) == {0, 1}
    from scipy import ndimage

    components, n = ndimage.label(mask[..., 0])
    assert n >= 3
    edited = mask.copy()
    edited[..., 0][components == 1] = 0  # the reviewer erases one nucleus
    affine = np.asarray(_affine(live, cid))
    r = c.post(f"/api/cases/{cid}/versions", params={"base_version": proposal["id"]}, content=nifti_bytes(edited, affine))
    assert r.status_code == 201, r.text
    accepted = c.post(f"/api/cases/{cid}/accept", json={"version_id": r.json()["id"], "seconds_spent": 5}).json()
    assert accepted["effort"]["voxels_changed"] == int((components == 1).sum())
    export = c.post(f"/api/projects/{pid}/export")
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        np.testing.assert_array_equal(read_mask(zf.read(manifest["cases"][0]["file"])), edited)
        coco_path = live.settings.data_dir / "coco-check.json"
        coco_path.write_bytes(zf.read("coco.json"))
    coco = COCO(str(coco_path))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[cid]))
    assert len(anns) == n - 1
    union = np.zeros(crop.shape, bool)
    for ann in anns:
        m = coco.annToMask(ann).astype(bool)
        assert ann["area"] == m.sum() and not (union & m).any()
        x, y, w, h = ann["bbox"]
        rows, cols = np.nonzero(m)
        assert (x, y, w, h) == (cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
        union |= m
    np.testing.assert_array_equal(union, edited[..., 0] == 1)
    assert coco.loadImgs([cid])[0]["height"] == crop.shape[0]


def _affine(live, cid):
    from medannot.server.models import CaseRecord

    with live.db.read() as s:
        return s.get(CaseRecord, cid).affine


@pytest.mark.slow
def test_dicom_upload_is_exported_as_dicom_seg_too(live, tmp_path):
    from server_helpers import add_project, add_users

    from iohelpers import write_dicom_series
    from medannot.annotations.dicom_seg import read_dicom_seg
    from medannot.server.imaging import case_geometry

    add_users(live, ["segadmin"])
    pid = add_project(live, "dicom-seg", "otsu", {"segadmin": "admin"})
    volume = np.zeros((12, 10, 6), np.int16)
    volume[3:8, 2:7, 1:5] = 400
    paths = write_dicom_series(tmp_path / "s", volume, (1, 0, 0), (0, 1, 0), pixel_spacing=(0.7, 0.7), slice_step=2.0)
    import pydicom
    from pydicom.uid import generate_uid

    frame_uid = generate_uid()
    for p in paths:  # DICOM SEG needs the series' frame of reference
        ds = pydicom.dcmread(p)
        ds.FrameOfReferenceUID = frame_uid
        ds.save_as(p)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in paths:
            zf.write(p, f"series/{p.name}")
    c = live.client("segadmin")
    r = upload(c, pid, "series.zip", buf.getvalue())
    assert r.status_code == 201 and r.json()["cases"][0]["name"] == "series"
    cid = r.json()["cases"][0]["id"]
    run_jobs(live)
    case = c.get(f"/api/cases/{cid}").json()
    assert case["source_format"] == "dicom-series"
    accepted = c.post(f"/api/cases/{cid}/accept", json={"version_id": case["latest_version"]["id"]}).json()
    mask = read_mask(c.get(accepted["accepted_version"]["mask_url"]).content)
    assert mask.sum() == 5 * 5 * 4
    export = c.post(f"/api/projects/{pid}/export")
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        entry = json.loads(zf.read("manifest.json"))["cases"][0]
        assert "dicom_seg_error" not in entry, entry.get("dicom_seg_error")
        seg_path = tmp_path / "seg.dcm"
        seg_path.write_bytes(zf.read(entry["dicom_seg"]))
    seg = read_dicom_seg(seg_path, case_geometry(_affine(live, cid)), mask.shape)
    np.testing.assert_array_equal(seg.array[0], mask)
