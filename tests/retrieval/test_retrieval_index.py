"""`medannot index` / `similar` on real 2D images and 3D volumes: each case finds itself first; clear errors."""

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from medannot import samples
from medannot.cli import app
from medannot.errors import InputError
from medannot.io import read_image
from medannot.retrieval import build_index, load_index, search
from medannot.retrieval.features import TEXT_BUCKETS, FeatureExtractor, annotation_words, hashed_text
from medannot.retrieval.index import query_extractor

runner = CliRunner()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """Four real nuclei crops (2D PNG) and three real MNI152 T1 sub-volumes (3D NIfTI) in one folder."""
    root = tmp_path_factory.mktemp("mixed") / "images"
    root.mkdir()
    img = samples.nuclei_image().scalar().astype(np.float32)
    for i, (r, c) in enumerate([(0, 0), (0, 256), (256, 0), (256, 256)]):
        a = img[r : r + 160, c : c + 200]
        PILImage.fromarray((255 * (a - a.min()) / (a.max() - a.min())).astype(np.uint8)).save(root / f"nuclei_{i}.png")
    t1 = nib.load(samples.mni152_path("t1"))
    vol = np.asarray(t1.dataobj, dtype=np.float32)
    for i, (x, y, z) in enumerate([(40, 50, 40), (100, 120, 60), (60, 60, 100)]):
        nib.save(nib.Nifti1Image(vol[x : x + 48, y : y + 40, z : z + 36], t1.affine), root / f"t1_{i}.nii.gz")
    return root


@pytest.mark.parametrize("model", [None, "modality"])
def test_every_case_finds_itself_first(mixed_folder, tmp_path, model):
    idx = build_index(mixed_folder, tmp_path / "index", model=model)
    assert len(idx) == 7 and idx.features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(idx.features, axis=1), 1.0, rtol=1e-5)
    again = load_index(tmp_path / "index")
    np.testing.assert_array_equal(again.features, idx.features)
    ext = query_extractor(again)
    for row, case in enumerate(again.cases):
        q = ext.vector(read_image(case["path"]))  # recomputed from the file, as `similar` does
        hits = search(again, q, k=3)
        assert hits[0][0] == row and hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert hits[1][1] < hits[0][1]
        assert (tmp_path / "index" / case["thumbnail"]).is_file()
    # 2D crops are nearer to each other than to the volumes' slices
    first = [c["name"] for c in (again.cases[r] for r, _ in search(again, again.features[0], k=4))]
    assert all(n.startswith("nuclei") for n in first)


def test_cli_index_and_similar_with_thumbnails(mixed_folder, tmp_path):
    index = tmp_path / "index"
    result = runner.invoke(app, ["index", str(mixed_folder), "--out", str(index), "--model", "none", "-q"])
    assert result.exit_code == 0, result.output
    assert "7 cases" in result.output
    page = tmp_path / "page"
    result = runner.invoke(app, ["similar", str(mixed_folder / "t1_1.nii.gz"), "--index", str(index), "-k", "3", "--out", str(page)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "1.0000" in line]
    assert len(rows) == 1 and "t1_1" in rows[0]
    html = (page / "similar.html").read_text()
    assert html.count("<tr><td>") == 3 and (page / "query.png").is_file() and len(list((page / "thumbs").glob("*.png"))) == 3


def test_annotation_words_become_the_text_block(tmp_path):
    ann = {"labels": [{"name": "grey matter", "voxels": 10}, {"name": "white matter", "voxels": 0}],
           "classification": {"label": "mr"}, "boxes": [{"label_name": "lesion"}]}
    assert annotation_words(ann) == ["grey matter", "mr", "lesion"]
    v = hashed_text(annotation_words(ann))
    assert v.shape == (TEXT_BUCKETS,) and v.sum() > 0 and not hashed_text([]).any()
    np.testing.assert_array_equal(v, hashed_text(["Grey MATTER", "mr", "lesion"]))  # case-insensitive tokens


def test_text_block_separates_identical_images(mixed_folder, tmp_path):
    ext = FeatureExtractor(model=None)
    image = read_image(mixed_folder / "nuclei_0.png")
    plain, tagged = ext.vector(image), ext.vector(image, {"labels": [{"name": "nucleus", "voxels": 5}]})
    assert float(plain @ tagged) < 0.99 and float(tagged @ ext.vector(image, {"labels": [{"name": "nucleus", "voxels": 9}]})) == pytest.approx(1.0)


def test_bad_inputs_are_one_line_and_leave_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    result = runner.invoke(app, ["index", str(tmp_path / "empty"), "--out", str(tmp_path / "index"), "--model", "none"])
    assert result.exit_code == 2 and len([x for x in result.output.splitlines() if x.strip()]) == 1
    assert not (tmp_path / "index").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".index")]
    result = runner.invoke(app, ["similar", str(tmp_path / "empty" / "notes.txt"), "--index", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not an index folder" in result.output
    with pytest.raises(InputError, match="features"):
        idx = build_index(samples.sample_dir() / "stardist", tmp_path / "i2", model=None)
        search(idx, np.ones(5, np.float32), k=1)
    assert json.loads((tmp_path / "i2" / "cases.json").read_text())["features"]["dim"] == idx.features.shape[1]


def test_index_reads_label_names_from_an_annotate_folder(mixed_folder, tmp_path):
    crops = tmp_path / "crops"
    crops.mkdir()
    for name in ("nuclei_0.png", "nuclei_1.png"):
        (crops / name).write_bytes((mixed_folder / name).read_bytes())
    out = tmp_path / "annotated"
    assert runner.invoke(app, ["annotate", str(crops / "nuclei_0.png"), "--method", "otsu", "--out", str(out), "-q"]).exit_code == 0
    plain = build_index(crops, tmp_path / "plain", model=None)
    tagged = build_index(crops, tmp_path / "tagged", model=None, annotations=out)
    a, b = FeatureExtractor(model=None).blocks["text"]
    rows = {c["name"]: i for i, c in enumerate(tagged.cases)}
    assert tagged.features[rows["nuclei_0"], a:b].any() and not tagged.features[rows["nuclei_1"], a:b].any()
    assert not plain.features[:, a:b].any()
