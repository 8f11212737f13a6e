"""One image loader: for every training source of every bundled model, the pixels training reads are the pixels
``medannot annotate`` reads (``discover_inputs(path)[0].load()``, i.e. :func:`medannot.io.read_image`).

Real files only: the modality classifier's 29 sources (packages and Debian data), the stardist nuclei image of
``nuclei`` / ``nuclei-detect`` and the MNI152 template of ``brain-mri``'s synthetic data. A bundle whose training
data source is not covered here fails the first test: add it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import medannot
from medannot.errors import InputError
from medannot.io import discover_inputs, read_dicom_frames, to_grey

BUNDLED = Path(medannot.__file__).resolve().parent / "bundled"
COVERED = {"modality-samples", "image-split", "synth-brain", "promptable-objects"}


def _training(bundle: str) -> dict:
    return json.loads((BUNDLED / bundle / "bundle.json").read_text())["training"]


def _source(bundle: str) -> str:
    """The bundle's training data source; a promptable bundle trains on the object sources of
    ``medannot.training.promptable_sources`` (checked below) and modality-samples backgrounds (checked above)."""
    spec = json.loads((BUNDLED / bundle / "bundle.json").read_text())
    return "promptable-objects" if spec.get("task") == "promptable" else spec["training"]["data"]["source"]


def _annotate_image(path: Path):
    items = discover_inputs(path)
    assert len(items) == 1, f"{path}: medannot annotate sees {len(items)} cases"
    return items[0].load().image


def _same_pixels(trained, annotated, what: str) -> None:
    assert trained.array.dtype == annotated.array.dtype, what
    assert trained.array.shape == annotated.array.shape, what
    np.testing.assert_array_equal(trained.array, annotated.array, err_msg=what)
    assert trained.geometry.isclose(annotated.geometry), what
    assert trained.meta.get("pixel_steps") == annotated.meta.get("pixel_steps"), what


def test_every_bundled_model_has_its_training_data_covered():
    sources = {d.name: _source(d.name) for d in sorted(BUNDLED.iterdir()) if (d / "bundle.json").is_file()}
    assert {"brain-mri", "nuclei", "nuclei-detect", "modality", "promptable-2d"} <= set(sources)
    assert set(sources.values()) <= COVERED, f"training data sources not checked against annotate's loader: {sources}"


# ----------------------------------------------------------------------------------------------- modality


def _modality_sources():
    from medannot.training.modality_samples import MODALITY_SOURCES

    return MODALITY_SOURCES


def test_the_modality_bundle_trains_on_all_29_sources():
    from medannot.training.modality_samples import modality_sources_status

    data = _training("modality")["data"]
    assert data["source"] == "modality-samples" and data["params"].get("groups") is None  # every source
    status = modality_sources_status()
    assert len(_modality_sources()) == 29
    if status["missing"]:
        pytest.fail(f"modality sources missing on this machine: {status['missing']}; run make install system-deps")


@pytest.fixture(scope="module")
def classifier():
    from medannot.inference.classifier import Classifier

    return Classifier.from_bundle("modality")


@pytest.mark.parametrize("group", [s.group for s in _modality_sources()])
def test_modality_source_pixels_are_those_annotate_reads(group, classifier):
    from medannot.training.modality_samples import modality_samples, modality_source_images, modality_source_paths, source_views

    source = next(s for s in _modality_sources() if s.group == group)
    paths = modality_source_paths(source)
    if paths is None:
        pytest.fail(f"modality source {group} missing on this machine; run make install system-deps")
    trained = modality_source_images(source, paths)
    if source.kind == "dicom-frames":
        # medannot annotate refuses these files (no 3D grid); training reads their frames with the same pixel steps
        annotated = []
        for p in paths:
            with pytest.raises(InputError, match="read_dicom_frames|Siemens mosaic"):
                _annotate_image(p)
            annotated += read_dicom_frames(p.read_bytes(), name=p.name)  # the bytes entry point: the same pixels
    else:
        annotated = [_annotate_image(p) for p in paths]
    assert len(trained) == len(annotated)
    for t, a in zip(trained, annotated):
        _same_pixels(t, a, group)
    # the training views are exact sub-arrays of the grey image annotate reads, and are what training uses
    expected = source_views(source, annotated)
    samples = modality_samples(groups=[group], max_side=10**9)
    assert len(samples) == len(expected) >= 2
    for s, view in zip(samples, expected):
        np.testing.assert_array_equal(s.array[0], view)
        assert s.label == source.label and s.group == group
    # annotate's classifier makes colour grey with the same named step training uses
    for image in annotated:
        if image.channels > 1:
            np.testing.assert_array_equal(classifier.prepare(image), classifier.prepare(image.with_array(to_grey(image.array))))


# ----------------------------------------------------------------------------------------------- nuclei, nuclei-detect


@pytest.mark.parametrize("bundle", ["nuclei", "nuclei-detect"])
def test_image_split_training_pixels_are_those_annotate_reads(bundle):
    from medannot.training.sources import _preprocess_pair, build_source, crop_image, resolve_data_path

    training = _training(bundle)
    data = training["data"]
    assert data["source"] == "image-split"
    params = data["params"]
    source = build_source("image-split", params, rng_seed=int(training["seed"]), patch_size=list(training["patch_size"]),
                          preprocessing=list(training["preprocessing"]))  # fmt: skip
    assert len(source._train) == len(source._val) == len(params["images"])
    for entry, (train_arr, _, _), val_case in zip(params["images"], source._train, source._val):
        val_image = val_case.image
        from medannot.io import read_image

        annotated = _annotate_image(resolve_data_path(entry["image"]))
        label = read_image(resolve_data_path(entry["label"]), kind="label")
        axis = params["axis"] % annotated.ndim
        size = annotated.spatial_shape[axis]
        cut = int(round(size * params["fraction"]))
        assert params["train_side"] == "low"
        start, stop = [0] * annotated.ndim, list(annotated.spatial_shape)
        start[axis], stop[axis] = cut, size
        _same_pixels(val_image, crop_image(annotated, start, stop), f"{bundle} validation region")
        start[axis], stop[axis] = 0, cut - int(params["margin"])
        expected, _ = _preprocess_pair(list(training["preprocessing"]), crop_image(annotated, start, stop), crop_image(label, start, stop))
        np.testing.assert_array_equal(train_arr, expected)


# ----------------------------------------------------------------------------------------------- brain-mri


def test_brain_mri_template_pixels_are_those_annotate_reads(monkeypatch):
    from medannot.training import synth_labels

    assert _training("brain-mri")["data"]["source"] == "synth-brain"
    read: dict[str, object] = {}
    real = synth_labels.read_image

    def recording(path, *args, **kwargs):
        image = real(path, *args, **kwargs)
        read[Path(path).name] = image
        return image

    monkeypatch.setattr(synth_labels, "read_image", recording)
    template = synth_labels.load_template.__wrapped__()
    files = [synth_labels._T1, synth_labels._GM, synth_labels._WM]
    assert sorted(read) == sorted(files)
    for name in files:
        _same_pixels(read[name], _annotate_image(synth_labels.MNI_DIR / name), name)
    # the template's intensities are the T1 annotate reads, scaled inside the head (padding added around it)
    t1 = _annotate_image(synth_labels.MNI_DIR / synth_labels._T1).array[0].astype(np.float32)
    p, below = 24, 56
    inner = template.t1[p:-p, p:-p, below : below + t1.shape[2]]  # load_template pads p around, below more at the bottom
    inside = inner > 0
    scale = inner[inside] / t1[inside]
    np.testing.assert_allclose(scale, scale[0], rtol=1e-6)


def test_promptable_training_objects_are_on_the_pixels_segment_reads():
    """The promptable network's real TRAIN objects lie on the pixels ``medannot segment`` reads from the same files:
    the left-half nuclei image is the annotate loader's image, cropped; the MNI152 slices are slices of its volume."""
    from medannot import samples
    from medannot.training.promptable_sources import NUCLEI_SPLIT_COLUMN, Split, object_cases

    nuclei = next(c for c in object_cases(Split.TRAIN, 2, ["nuclei-left"]))
    read = _annotate_image(samples.sample_dir() / "stardist" / "img2d.tif").array[0]
    np.testing.assert_array_equal(nuclei.image.array[0], read[:, :NUCLEI_SPLIT_COLUMN].astype(np.float32))
    mni = next(c for c in object_cases(Split.TRAIN, 2, ["mni152-tissue-2d"]))
    volume = _annotate_image(samples.mni152_path("t1")).array[0]
    axis, k = (int(v) for v in mni.name.split("/")[1][2:].split("-"))
    np.testing.assert_array_equal(mni.image.array[0], np.take(volume, k, axis=axis).astype(np.float32))
