"""Private attributes dropped unless allow-listed; images that may show text in their pixels are quarantined."""

from __future__ import annotations

import pydicom
import pytest
from deid_helpers import CAT, COOKIES, CT_BRAINS, US_BURNED_IN, copy_inputs, identifying_values, leaks

from medannot.errors import ConfigError
from medannot.privacy import Deidentifier, DeidOptions, PrivateTagRule, burned_in_reason, parse_private_tag
from medannot.privacy.batch import QUARANTINE_DIR, DeidStatus, deidentify_tree

SIEMENS = "SIEMENS CT VA0  COAD"


def _private_tags(ds) -> set[int]:
    return {int(e.tag) for e in ds.iterall() if e.tag.is_private}


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("0019,1092", PrivateTagRule(0x0019, 0x1092)),
        ("(0019,1092)", PrivateTagRule(0x0019, 0x1092)),
        ("00191092", PrivateTagRule(0x0019, 0x1092)),
        (f"0019,xx92@{SIEMENS}", PrivateTagRule(0x0019, 0x92, SIEMENS)),
        (f"0019,1092@{SIEMENS}", PrivateTagRule(0x0019, 0x92, SIEMENS)),
    ],
)
def test_parse_private_tag(text, rule):
    assert parse_private_tag(text) == rule


@pytest.mark.parametrize("text", ["0010,0010", "19,1092", "0019,xx92", "nonsense"])
def test_parse_private_tag_refuses(text):
    with pytest.raises(ConfigError):
        parse_private_tag(text)


def test_private_dropped_unless_allow_listed():
    original = pydicom.dcmread(CT_BRAINS[0])
    assert len(_private_tags(original)) > 20
    assert _private_tags(Deidentifier(DeidOptions(assume_no_burned_in=True)).deidentify(original)) == set()
    rules = (parse_private_tag("0019,1092"), parse_private_tag(f"0019,xx93@{SIEMENS}"), parse_private_tag("0021,xx11@NOT THE CREATOR"))
    kept = Deidentifier(DeidOptions(keep_private=rules, assume_no_burned_in=True)).deidentify(original)
    assert _private_tags(kept) == {0x00190010, 0x00191092, 0x00191093}  # the two values and their creator
    assert kept[0x00191092].value == original[0x00191092].value
    assert "113111" in [item.CodeValue for item in kept.DeidentificationMethodCodeSequence]


def test_burned_in_rule():
    cookie, cat, us = (pydicom.dcmread(p, stop_before_pixels=False) for p in (COOKIES[0], CAT, US_BURNED_IN))
    assert us.BurnedInAnnotation == "YES" and cat.BurnedInAnnotation == "NO" and "BurnedInAnnotation" not in cookie
    assert burned_in_reason(us).startswith("Burned In Annotation is YES")
    assert burned_in_reason(us, assume_no_burned_in=True) is not None  # YES is never waived
    assert "Secondary Capture" in burned_in_reason(cookie)
    assert burned_in_reason(cookie, assume_no_burned_in=True) is None
    assert burned_in_reason(cat) is None
    cat.RecognizableVisualFeatures = "YES"
    assert "Recognizable Visual Features" in burned_in_reason(cat)
    del us.PixelData
    assert burned_in_reason(us) is None  # no pixels, nothing to show


def test_batch_quarantines_with_reason_and_clean_header(tmp_path):
    source = copy_inputs([US_BURNED_IN, CAT, COOKIES[0]], tmp_path / "in")
    results = {r.source.name: r for r in deidentify_tree(source, tmp_path / "out", Deidentifier())}
    assert results[CAT.name].status is DeidStatus.WRITTEN
    for name, why in ((US_BURNED_IN.name, "Burned In Annotation is YES"), (COOKIES[0].name, "no Burned In Annotation")):
        result = results[name]
        assert result.status is DeidStatus.QUARANTINED and result.reason.startswith(why)
        assert result.output.parent == tmp_path / "out" / QUARANTINE_DIR
        assert result.output.with_suffix(".reason.txt").read_text().startswith(why)
        # the quarantined copy already has its header de-identified, pixels untouched
        assert leaks(identifying_values(pydicom.dcmread(result.source)), result.output) == []
        assert pydicom.dcmread(result.output).PixelData == pydicom.dcmread(result.source).PixelData
    passed = {p.name for p in (tmp_path / "out").glob("*.dcm")}
    assert passed == {results[CAT.name].output.name}
