"""De-identification on ingest through a dataset hook: io.dicomweb never imports medannot.privacy; the caller passes
``Deidentifier().deidentify`` (or any Dataset -> Dataset callable), and the item keeps it in a typed field."""

from __future__ import annotations

import json

import pytest

from medannot.errors import ConfigError, InputError
from medannot.io import discover_inputs
from medannot.io.dicomweb import PacsSettings, RemoteSeries
from medannot.privacy import Deidentifier


def test_deidentifying_hook_runs_before_anything_touches_the_disk(mr_study):
    seen = []
    deid = Deidentifier()

    def hook(ds):
        seen.append(str(ds.SOPInstanceUID))
        return deid.deidentify(ds)

    settings = PacsSettings(deidentify=True, timeout_s=10)
    items = discover_inputs(mr_study.url, settings, dataset_hook=hook)
    assert [it.name for it in items] == ["series_1"] and items[0].source == "dicomweb"
    assert isinstance(items[0].remote, RemoteSeries) and items[0].remote.settings is settings
    assert dict(items[0].meta) == {"modality": "MR"}  # plain values only: no settings, hook or location objects
    json.dumps(dict(items[0].meta))
    case = items[0].load()
    assert len(seen) == 18  # every instance went through the hook
    image = case.image
    assert image.meta["PatientID"] != "PAT-001" and image.meta["StudyInstanceUID"] != mr_study.study_uid
    assert "de-identified" in image.meta["source"]
    assert not any(k in case.meta for k in ("pacs_settings", "deidentifier", "dicomweb"))
    originals = list(case.dicom_headers)  # the SEG must reference the study on the PACS
    assert {str(ds.StudyInstanceUID) for ds in originals} == {mr_study.study_uid}


def test_deidentify_without_a_hook_is_refused_before_retrieval(mr_study):
    with pytest.raises(ConfigError, match="needs a de-identifying dataset_hook"):
        discover_inputs(mr_study.url, PacsSettings(deidentify=True))
    with pytest.raises(ConfigError, match="callable"):
        discover_inputs(mr_study.url, PacsSettings(), dataset_hook="deidentify")  # type: ignore[arg-type]


def test_a_hook_that_refuses_an_instance_refuses_the_series(mr_study):
    def refuse(ds):
        raise InputError("burned-in annotation")

    item = discover_inputs(mr_study.url, PacsSettings(), dataset_hook=refuse)[0]
    with pytest.raises(InputError, match="not de-identified, so not annotated: burned-in annotation"):
        item.load()
