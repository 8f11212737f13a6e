"""DICOMweb addresses: parsing, credentials kept out of messages, UIDs checked before any request."""

from __future__ import annotations

import pytest

from medannot.errors import InputError
from medannot.io.dicomweb import PacsSettings, SeriesInfo, is_dicomweb_url, pacs_location, parse_dicomweb_url


def test_study_and_series_addresses():
    loc = parse_dicomweb_url("dicomweb+http://127.0.0.1:8042/dicom-web/studies/1.2.840.1")
    assert (loc.base_url, loc.study_uid, loc.series_uid) == ("http://127.0.0.1:8042/dicom-web", "1.2.840.1", None)
    assert loc.url == "dicomweb+http://127.0.0.1:8042/dicom-web/studies/1.2.840.1"
    loc = parse_dicomweb_url("dicomweb+https://pacs.example.org/studies/1.2.3/series/4.5.6/")
    assert (loc.base_url, loc.study_uid, loc.series_uid) == ("https://pacs.example.org", "1.2.3", "4.5.6")
    assert parse_dicomweb_url(loc.url) == loc


def test_credentials_are_used_but_never_shown():
    loc = parse_dicomweb_url("dicomweb+http://alice:p%40ss@host:8042/dicom-web/studies/1.2.3")
    assert (loc.username, loc.password, loc.base_url) == ("alice", "p@ss", "http://host:8042/dicom-web")
    assert "p@ss" not in loc.url and "p%40ss" not in loc.url and "p@ss" not in repr(loc)
    assert parse_dicomweb_url(loc.url_with_credentials()) == loc


def test_pacs_and_study_options_give_the_same_location():
    a = pacs_location("http://127.0.0.1:8042/dicom-web/", "1.2.3")
    b = parse_dicomweb_url("dicomweb+http://127.0.0.1:8042/dicom-web/studies/1.2.3")
    assert a == b
    assert pacs_location("dicomweb+http://127.0.0.1:8042/dicom-web", "1.2.3", "4.5").series_uid == "4.5"


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://host/dicom-web/studies/1.2.3", r"expected a dicomweb\+http"),
        ("dicomweb+http://host/dicom-web/1.2.3", "must end in /studies/STUDY_UID"),
        ("dicomweb+http://host/dicom-web/studies/1.2.3?x=1", "query or fragment"),
        ("dicomweb+http:///dicom-web/studies/1.2.3", "no host"),
        ("dicomweb+http://host:99999/studies/1.2.3", "invalid port"),
        ("dicomweb+http://host/studies/..%2F..%2Fetc%2Fpasswd", "not a DICOM UID"),
        ("dicomweb+http://host/studies/1.2.3/series/1.02", "not a DICOM UID"),  # leading zero
        ("dicomweb+http://host/studies/" + "1." * 40 + "1", "at most 64"),
    ],
)
def test_malformed_addresses_are_refused(url, message):
    with pytest.raises(InputError, match=message):
        parse_dicomweb_url(url)


def test_pacs_option_must_be_the_root():
    with pytest.raises(InputError, match="DICOMweb root"):
        pacs_location("http://host/dicom-web/studies/1.2.3", "1.2.3")
    with pytest.raises(InputError, match="http:// or https://"):
        pacs_location("ftp://host/dicom-web", "1.2.3")


def test_is_dicomweb_url_only_for_strings():
    from pathlib import Path

    assert is_dicomweb_url("DICOMweb+HTTP://h/studies/1")
    assert not is_dicomweb_url(Path("dicomweb+http:/h/studies/1"))
    assert not is_dicomweb_url("scan.nii.gz")


def test_settings_are_validated():
    with pytest.raises(InputError, match="timeout"):
        PacsSettings(timeout_s=0)
    with pytest.raises(InputError, match="retries"):
        PacsSettings(retries=-1)


def test_segmentations_and_reports_are_not_image_series():
    assert SeriesInfo("1.2", "MR").is_image and SeriesInfo("1.2", "").is_image
    assert not SeriesInfo("1.2", "SEG").is_image and not SeriesInfo("1.2", "sr").is_image
