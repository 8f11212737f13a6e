"""Peer check: dicom-anonymizer (2026c rules) and medannot change exactly the same attributes of the real files."""

from __future__ import annotations

import copy
import functools
import warnings

import pydicom
import pytest
from deid_helpers import CAT, COOKIES, CT_BRAINS
from dicomanonymizer.simpledicomanonymizer import anonymize_dataset, initialize_actions

from medannot.privacy import Deidentifier, DeidOptions


def _state(ds, tag):
    if tag not in ds:
        return "<removed>"
    value = ds[tag].value
    return "" if value is None or value == "" else value


@pytest.mark.parametrize("path", [CT_BRAINS[0], COOKIES[0], CAT], ids=lambda p: p.name)
def test_same_attributes_changed_as_peer(path):
    with warnings.catch_warnings():  # the peer and the deid-data files make pydicom talk
        warnings.simplefilter("ignore")
        original = pydicom.dcmread(path)
        peer = copy.deepcopy(original)
        anonymize_dataset(peer, None, True, functools.partial(initialize_actions, "dicomfields_2026c"))
        ours = Deidentifier(DeidOptions(assume_no_burned_in=True)).deidentify(original)
        # attributes with a value: an empty one may become empty or a dummy (the peer writes 00010101), both per Z
        public = [e.tag for e in original if not e.tag.is_private and _state(original, e.tag) != ""]
        changed_by_peer = {t for t in public if _state(peer, t) != _state(original, t)}
        changed_by_us = {t for t in public if _state(ours, t) != _state(original, t)}
    assert len(changed_by_peer) >= 8
    assert changed_by_us == changed_by_peer
