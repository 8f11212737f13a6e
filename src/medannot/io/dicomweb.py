"""DICOMweb: find series (QIDO-RS), retrieve them (WADO-RS), store instances (STOW-RS) and delete series on a PACS.

Built on the ``dicomweb-client`` library. Its requests session has a timeout on every call and retries
connection failures and HTTP 5xx answers with exponential back-off (urllib3 ``Retry``); every failure
becomes one typed, one-line error:

* :class:`~medannot.errors.PacsError`: the server is down, does not answer in time, refuses (401/403)
  or answers with an error;
* :class:`~medannot.errors.InputError`: a malformed address or UID, or a study that does not exist.

Addresses: ``dicomweb+http://HOST:PORT/dicom-web/studies/STUDY_UID[/series/SERIES_UID]`` (``dicomweb+https``
too; credentials as ``USER:PASSWORD@HOST``), or a plain DICOMweb root plus a study UID
(:func:`pacs_location`, the CLI's ``--pacs URL --study UID``). UIDs are checked to be DICOM UIDs (digits and
dots) before use; retrieved files are named by their position, never by a UID.

De-identification on ingest is the caller's: it passes a *dataset hook*, a plain callable
``pydicom Dataset -> Dataset`` (e.g. ``medannot.privacy.Deidentifier().deidentify``), applied in memory to every
retrieved instance before it touches the disk. This module never imports :mod:`medannot.privacy` (a higher layer);
:class:`PacsSettings` with ``deidentify=True`` and no hook is refused, so nothing is ever annotated un-de-identified
by mistake.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medannot.errors import ConfigError, InputError, PacsError
from medannot.io.dicomweb_address import (
    SCHEMES,
    DicomWebLocation,
    check_uid,
    is_dicomweb_url,
    pacs_location,
    parse_dicomweb_url,
    split_base,
)

__all__ = [
    "NON_IMAGE_MODALITIES",
    "SCHEMES",
    "DatasetHook",
    "DicomWebLocation",
    "PacsClient",
    "PacsSettings",
    "RemoteSeries",
    "SeriesInfo",
    "discover_dicomweb",
    "is_dicomweb_url",
    "load_dicomweb_series",
    "pacs_location",
    "parse_dicomweb_url",
    "write_instances",
]

#: Modalities of series that hold no image to annotate (segmentations, reports, structure sets, ...).
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE", "PR", "KO", "DOC", "REG", "FID", "RWV", "PLAN"})
_RETRY_STATUS = (500, 502, 503, 504)
#: STOW-RS FailureReason codes (PS3.18 Table I.2-1 / PS3.4 Annex GG) and what they mean.
_FAILURE_REASONS = {
    0x0110: "processing failure", 0x0122: "SOP class not supported", 0x0124: "not authorised",
    0xA700: "out of resources", 0xA900: "data set does not match SOP class", 0xC000: "cannot understand",
    0xC122: "transfer syntax not supported",
}  # fmt: skip


def _failures_text(answer: Any, total: int) -> str | None:
    """'N of M instance(s) refused (first UID: reason)' from a STOW-RS answer dataset, or None when none failed."""
    failed = list(getattr(answer, "FailedSOPSequence", []) or [])
    if not failed:
        return None
    first = failed[0]
    code = first.get("FailureReason")
    reason = "no reason given" if code is None else f"FailureReason 0x{int(code):04X} {_FAILURE_REASONS.get(int(code), 'unknown')}"
    return f"{len(failed)} of {total} instance(s) refused (first {first.get('ReferencedSOPInstanceUID', '?')}: {reason})"


def _answer_dataset(response: Any) -> Any:
    """The DICOM JSON body of an error answer as a pydicom Dataset, or None."""
    import pydicom

    try:
        return pydicom.Dataset.from_json(response.json())
    except Exception:  # noqa: BLE001 - any body that is not DICOM JSON simply has no details to add
        return None


@dataclass(frozen=True)
class PacsSettings:
    """How patiently to talk to a PACS, and whether to de-identify what it sends.

    Attributes:
        timeout_s: Seconds to wait for a connection, and the longest silence allowed while waiting for or
            reading an answer (> 0); a long transfer that keeps sending is not cut.
        retries: Extra attempts after a refused connection or an HTTP 5xx answer (>= 0).
        backoff_s: Back-off factor in seconds: waits 0, 2*b, 4*b, ... between attempts (>= 0).
        deidentify: De-identify what is retrieved, in memory, before it touches the disk (PS3.15 Basic
            Profile), so local outputs carry only pseudonyms and new UIDs. The de-identification itself is the
            ``dataset_hook`` the caller passes (:func:`discover_dicomweb`); ``True`` without a hook is refused.
    """

    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.5
    deidentify: bool = False

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise InputError(f"the PACS timeout must be > 0 seconds, got {self.timeout_s}")
        if self.retries < 0:
            raise InputError(f"the PACS retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0:
            raise InputError(f"the PACS back-off must be >= 0 seconds, got {self.backoff_s}")


@dataclass(frozen=True)
class SeriesInfo:
    """One series as QIDO-RS describes it."""

    series_uid: str
    modality: str = ""
    description: str = ""
    number: str = ""
    instances: int | None = None

    @property
    def is_image(self) -> bool:
        """False for segmentations, reports, structure sets and other series without images to annotate."""
        return self.modality.upper() not in NON_IMAGE_MODALITIES


def _json_value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or []
    return values[0] if values else None


def _session(settings: PacsSettings, username: str | None, password: str | None):
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=None, connect=settings.retries, read=False, redirect=3, other=0, status=settings.retries,
        status_forcelist=_RETRY_STATUS, allowed_methods=None, backoff_factor=settings.backoff_s,
        raise_on_status=False, respect_retry_after_header=False,
    )  # fmt: skip
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if username is not None:
        session.auth = (username, password or "")
    return session


class PacsClient:
    """A DICOMweb client (``dicomweb_client.DICOMwebClient``) with timeouts, retries and typed errors.

    Args:
        base_url: DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.
        settings: Timeout, retries and back-off (defaults: 30 s, 3 retries, 0.5 s).
        username: HTTP basic-auth user (optional).
        password: Its password.
    """

    def __init__(self, base_url: str, settings: PacsSettings | None = None, username: str | None = None, password: str | None = None) -> None:
        from dicomweb_client import DICOMwebClient

        origin, url_user, url_password, path = split_base(base_url, "the DICOMweb root")
        self.base_url = origin + path.rstrip("/")
        self.settings = settings or PacsSettings()
        user = username if username is not None else url_user
        self._session = _session(self.settings, user, password if password is not None else url_password)
        try:
            self._client = DICOMwebClient(
                self.base_url,
                session=self._session,
                timeout=(self.settings.timeout_s, self.settings.timeout_s),
                chunk_size=2**31 - 1,  # bodies are sent whole, so a retried request can send them again
            )
        except ValueError as exc:
            raise InputError(f"the DICOMweb root {self.base_url} is not usable: {' '.join(str(exc).split())}") from None
        self._client.set_http_retry_params(retry=False)  # retries live in the session (urllib3), not twice

    @classmethod
    def for_location(cls, location: DicomWebLocation, settings: PacsSettings | None = None) -> PacsClient:
        """A client for the server of ``location`` (with its credentials)."""
        return cls(location.base_url, settings, location.username, location.password)

    # ------------------------------------------------------------------ errors

    @contextmanager
    def _errors(self, action: str, missing: str | None = None) -> Iterator[None]:
        """Turn requests / urllib3 / dicomweb-client failures into one-line PacsError / InputError.

        ``missing`` names what an HTTP 404 means is absent (e.g. ``"study 1.2.3"``): InputError, not PacsError.
        """
        import requests

        where = f"the PACS at {self.base_url}"
        s = self.settings
        tries = f"{s.retries + 1} attempt{'s' if s.retries else ''}"
        try:
            yield
        except requests.exceptions.ConnectTimeout:
            raise PacsError(f"{action}: cannot connect to {where} within {s.timeout_s:g} s ({tries}); check the address and that the server runs") from None
        except requests.exceptions.Timeout:
            raise PacsError(f"{action}: {where} did not answer within {s.timeout_s:g} s; the server is busy or hung (raise --pacs-timeout)") from None
        except requests.exceptions.ConnectionError as exc:
            text = str(exc)
            why = "connection refused" if "refused" in text.lower() else " ".join(text.split())[-160:]
            raise PacsError(f"{action}: cannot reach {where} ({why}; {tries}); is the server running? (`make pacs` starts a local one)") from None
        except requests.exceptions.HTTPError as exc:
            response = exc.response
            code = response.status_code if response is not None else 0
            reason = (response.reason if response is not None else "") or ""
            if code in (401, 403):
                raise PacsError(
                    f"{action}: {where} refused access (HTTP {code} {reason}); give credentials as "
                    "dicomweb+http://USER:PASSWORD@HOST/... or ask the PACS administrator for access"
                ) from None
            if code == 404 and missing is not None:
                raise InputError(f"{missing} not found on {where} (HTTP 404); check the UID") from None
            detail = ""
            if response is not None and response.text:
                detail = ": " + " ".join(response.text.split())[:160]
            answer = _answer_dataset(response) if response is not None and code in (400, 409) else None
            if answer is not None:  # a STOW-RS refusal lists the instances and why
                total = len(answer.get("FailedSOPSequence") or []) + len(answer.get("ReferencedSOPSequence") or [])
                refused = _failures_text(answer, total)
                if refused:
                    raise PacsError(f"{action}: {where} answered HTTP {code} {reason}: {refused}") from None
            after = f" ({tries})" if code in _RETRY_STATUS else ""
            raise PacsError(f"{action}: {where} answered HTTP {code} {reason}{after}{detail}") from None
        except requests.exceptions.RequestException as exc:
            raise PacsError(f"{action}: request to {where} failed ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # malformed answers (multipart, JSON)
            raise PacsError(f"{action}: unexpected answer from {where} ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None

    # ------------------------------------------------------------------ QIDO-RS

    def list_series(self, study_uid: str, modality: str | None = None) -> list[SeriesInfo]:
        """Series of a study (QIDO-RS), optionally only those of one Modality (e.g. ``"SEG"``).

        Returns:
            Series in the server's order; empty when the study has none (or none of that modality).

        Raises:
            PacsError: Server down, timeout, access refused or an error answer.
        """
        study_uid = check_uid(study_uid, "StudyInstanceUID")
        filters = {"Modality": modality} if modality else None
        fields = ("SeriesDescription", "SeriesNumber", "Modality", "NumberOfSeriesRelatedInstances")
        with self._errors(f"listing the series of study {study_uid}", f"study {study_uid}"):
            found = self._client.search_for_series(study_uid, fields=fields, search_filters=filters, get_remaining=True)
        out = []
        for item in found:
            uid = _json_value(item, "0020000E")
            if not uid:
                continue
            count = _json_value(item, "00201209")
            out.append(SeriesInfo(
                str(uid), str(_json_value(item, "00080060") or ""), str(_json_value(item, "0008103E") or ""),
                "" if _json_value(item, "00200011") is None else str(_json_value(item, "00200011")),
                None if count is None else int(count),
            ))  # fmt: skip
        return out

    def require_study(self, study_uid: str) -> list[SeriesInfo]:
        """Series of a study that must exist.

        Raises:
            InputError: The PACS knows no such study (QIDO finds no series).
            PacsError: Server down, timeout, access refused or an error answer.
        """
        series = self.list_series(study_uid)
        if not series:
            raise InputError(f"study {study_uid} not found on the PACS at {self.base_url} (QIDO-RS finds no series); check the StudyInstanceUID")
        return series

    # ------------------------------------------------------------------ WADO-RS

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[Any]:
        """Every instance of a series (WADO-RS) as pydicom datasets, pixel data uncompressed (Explicit VR Little Endian).

        Raises:
            InputError: The series (or study) does not exist.
            PacsError: Server down, timeout, access refused or an error answer.
        """
        study_uid = check_uid(study_uid, "StudyInstanceUID")
        series_uid = check_uid(series_uid, "SeriesInstanceUID")
        with self._errors(f"retrieving series {series_uid}", f"series {series_uid} of study {study_uid}"):
            datasets = self._client.retrieve_series(study_uid, series_uid)
        if not datasets:
            raise InputError(f"series {series_uid} of study {study_uid} has no instances on the PACS at {self.base_url}")
        return datasets

    def retrieve_series_to(self, study_uid: str, series_uid: str, folder: Path) -> list[Path]:
        """Retrieve a series (WADO-RS) and write its instances into ``folder`` (see :func:`write_instances`)."""
        return write_instances(self.retrieve_series(study_uid, series_uid), folder)

    # ------------------------------------------------------------------ STOW-RS

    def store(self, datasets: Sequence[Any], study_uid: str | None = None) -> list[str]:
        """Store instances (STOW-RS).

        Args:
            datasets: pydicom datasets.
            study_uid: Their StudyInstanceUID (optional; checks that every instance belongs to it).

        Returns:
            SOPInstanceUIDs the server reports as stored.

        Raises:
            PacsError: Server down, timeout, refused, or the server failed to store some instance (with its reason).
        """
        if not datasets:
            return []
        study_uid = None if study_uid is None else check_uid(study_uid, "StudyInstanceUID")
        with self._errors(f"storing {len(datasets)} instance(s)"):
            answer = self._client.store_instances(list(datasets), study_instance_uid=study_uid)
        refused = _failures_text(answer, len(datasets))
        if refused:
            raise PacsError(f"storing {len(datasets)} instance(s): the PACS at {self.base_url} stored only some: {refused}")
        return [str(item.ReferencedSOPInstanceUID) for item in getattr(answer, "ReferencedSOPSequence", []) or []]

    # ------------------------------------------------------------------ deletion

    def delete_series(self, study_uid: str, series_uid: str) -> str:
        """Delete one series: DICOMweb ``DELETE .../studies/S/series/X`` (not in the standard; some archives offer it),
        else, when the server is an Orthanc (whose DICOMweb plugin answers 405), its REST API (``DELETE /series/ID``).

        Returns:
            How it was deleted: ``"DICOMweb"`` or ``"Orthanc REST API"``.

        Raises:
            PacsError: Access refused, or the server offers no way to delete (nothing was deleted), or an error answer.
        """
        study_uid = check_uid(study_uid, "StudyInstanceUID")
        series_uid = check_uid(series_uid, "SeriesInstanceUID")
        action = f"deleting series {series_uid}"
        timeout = (self.settings.timeout_s, self.settings.timeout_s)
        with self._errors(action):
            response = self._session.delete(f"{self.base_url}/studies/{study_uid}/series/{series_uid}", timeout=timeout)
            if response.ok:
                return "DICOMweb"
            if response.status_code not in (400, 404, 405, 501):
                response.raise_for_status()
        code = response.status_code
        rest = self._orthanc_rest_root()
        if rest is None:
            raise PacsError(f"{action}: the PACS at {self.base_url} does not delete series over DICOMweb (HTTP {code}) and is not an "
                            "Orthanc whose REST API could; nothing was deleted (remove it on the PACS, or use --on-existing keep-both)")
        with self._errors(action):
            found = self._session.post(f"{rest}/tools/lookup", data=series_uid, timeout=timeout)
            found.raise_for_status()
            ids = [str(item.get("ID")) for item in found.json() if isinstance(item, dict) and item.get("Type") == "Series"]
            for orthanc_id in ids:
                info = self._session.get(f"{rest}/series/{orthanc_id}", timeout=timeout)
                info.raise_for_status()
                parent = self._session.get(f"{rest}/studies/{info.json().get('ParentStudy')}", timeout=timeout)
                parent.raise_for_status()
                if (info.json().get("MainDicomTags", {}).get("SeriesInstanceUID") == series_uid
                        and parent.json().get("MainDicomTags", {}).get("StudyInstanceUID") == study_uid):
                    self._session.delete(f"{rest}/series/{orthanc_id}", timeout=timeout).raise_for_status()
                    return "Orthanc REST API"
        raise PacsError(f"{action}: the Orthanc at {rest} holds no series {series_uid} in study {study_uid}; nothing was deleted")

    def _orthanc_rest_root(self) -> str | None:
        """The REST root of an Orthanc serving this DICOMweb root (its parent path), or None when it is not one."""
        import requests

        if "/" not in self.base_url.split("://", 1)[1]:
            return None
        root = self.base_url.rsplit("/", 1)[0]
        try:
            answer = self._session.get(f"{root}/system", timeout=(self.settings.timeout_s, self.settings.timeout_s))
            system = answer.json() if answer.ok else None
        except (requests.exceptions.RequestException, ValueError):
            return None
        return root if isinstance(system, dict) and "ApiVersion" in system and "DicomAet" in system else None

    def store_files(self, paths: Sequence[Path]) -> list[tuple[str, str]]:
        """Store DICOM files (STOW-RS), one study per request; non-DICOM files are refused by name.

        Returns:
            ``(StudyInstanceUID, SOPInstanceUID)`` of every stored instance.

        Raises:
            InputError: A file is not DICOM.
            PacsError: As :meth:`store`.
        """
        import pydicom
        from pydicom.errors import InvalidDicomError

        by_study: dict[str, list[Any]] = {}
        for path in paths:
            try:
                ds = pydicom.dcmread(path)
            except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
                raise InputError(f"not a readable DICOM file ({' '.join(str(exc).split())[:120]})", path) from None
            by_study.setdefault(str(ds.get("StudyInstanceUID", "")), []).append(ds)
        stored = []
        for study, datasets in by_study.items():
            stored += [(study, uid) for uid in self.store(datasets, study or None)]
        return stored


def write_instances(datasets: Sequence[Any], folder: Path) -> list[Path]:
    """Write datasets as DICOM files ``00001.dcm``, ``00002.dcm``, ... into ``folder`` (created).

    Files are named by position, never by a UID; file meta information is added when missing.
    Returns the written paths.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets, start=1):
        if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
        path = folder / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------- discovery

#: A transform applied in memory to every retrieved instance before it touches the disk (``Dataset -> Dataset``),
#: e.g. ``medannot.privacy.Deidentifier().deidentify``. It may raise :class:`InputError` to refuse an instance.
DatasetHook = Callable[[Any], Any]


@dataclass(frozen=True)
class RemoteSeries:
    """One image series on a PACS, not yet retrieved: what an input item needs to fetch it (typed, never in ``meta``).

    Attributes:
        name: Safe case name (``SeriesDescription_SeriesNumber``, or ``series_N`` when de-identifying).
        modality: The series' Modality as QIDO-RS gives it.
        location: The series' address.
        settings: Timeout, retries, back-off (and whether the hook de-identifies).
        dataset_hook: Applied to every retrieved instance before it touches the disk; None: none.
    """

    name: str
    modality: str
    location: DicomWebLocation
    settings: PacsSettings
    dataset_hook: DatasetHook | None = None

    def load(self, kind: Any = None) -> tuple[Any, list[Any]]:
        """Retrieve and read the series: :func:`load_dicomweb_series` with this item's settings and hook."""
        return load_dicomweb_series(self.location, self.settings, kind, dataset_hook=self.dataset_hook)


def _check_hook(settings: PacsSettings, dataset_hook: DatasetHook | None) -> None:
    if dataset_hook is not None and not callable(dataset_hook):
        raise ConfigError(f"dataset_hook must be a callable Dataset -> Dataset, got {type(dataset_hook).__name__}")
    if settings.deidentify and dataset_hook is None:
        raise ConfigError(
            "PacsSettings(deidentify=True) needs a de-identifying dataset_hook (e.g. dataset_hook="
            "medannot.privacy.Deidentifier().deidentify); nothing was retrieved"
        )


def discover_dicomweb(url: str, settings: PacsSettings | None = None, dataset_hook: DatasetHook | None = None) -> list[RemoteSeries]:
    """One :class:`RemoteSeries` per image series of the study at ``url`` (nothing retrieved yet).

    Series without images (SEG, SR, RTSTRUCT, ...) are left out, so a study annotated before is not
    annotated again from its own segmentations. Series are named ``SeriesDescription_SeriesNumber``
    (``series_N`` when ``settings.deidentify``: descriptions may hold identifiers).

    Args:
        url: ``dicomweb+http(s)://HOST/ROOT/studies/UID[/series/UID]``.
        settings: Timeout, retries, back-off; ``deidentify=True`` requires ``dataset_hook``.
        dataset_hook: Applied in memory to every instance retrieved later (one hook for the run, so a
            de-identifier keeps UIDs consistent across the study's series).

    Raises:
        InputError: Malformed address, unknown study or series, or a study without image series.
        PacsError: Server down, timeout or access refused.
        ConfigError: ``settings.deidentify`` without a ``dataset_hook``, or a hook that is not callable.
    """
    from medannot.io.discover import safe_name

    settings = settings or PacsSettings()
    _check_hook(settings, dataset_hook)
    location = parse_dicomweb_url(url)
    client = PacsClient.for_location(location, settings)
    series = client.require_study(location.study_uid)
    if location.series_uid is not None:
        series = [s for s in series if s.series_uid == location.series_uid]
        if not series:
            raise InputError(f"series {location.series_uid} not found in study {location.study_uid} on the PACS at {location.base_url}")
    images = [s for s in series if s.is_image]
    if not images:
        kinds = ", ".join(sorted({s.modality or "?" for s in series}))
        raise InputError(f"study {location.study_uid} on the PACS at {location.base_url} has no image series to annotate (only {kinds})")
    out = []
    for index, info in enumerate(images, start=1):
        label = "" if settings.deidentify else "_".join(x for x in (info.description, info.number) if x)
        name = safe_name(label or f"series_{index}", f"series_{index}")
        series_location = DicomWebLocation(location.base_url, location.study_uid, info.series_uid, location.username, location.password)
        out.append(RemoteSeries(name, info.modality, series_location, settings, dataset_hook))
    return out


def load_dicomweb_series(
    location: DicomWebLocation,
    settings: PacsSettings | None = None,
    kind: Any = None,
    deidentifier: Any = None,
    *,
    dataset_hook: DatasetHook | None = None,
) -> tuple[Any, list[Any]]:
    """Retrieve one series (WADO-RS) into a temporary folder and read it with :func:`medannot.io.dicom.read_dicom_series`.

    Args:
        location: A location naming a series.
        settings: Timeout, retries, back-off.
        kind: ``"intensity"`` (default) or ``"label"``.
        deidentifier: Kept for callers of the old signature: an object with a ``deidentify(dataset)`` method,
            used as ``dataset_hook=deidentifier.deidentify``.
        dataset_hook: Applied in memory to every instance before it touches the disk (e.g.
            ``medannot.privacy.Deidentifier().deidentify``), so the image (and its ``meta``) carries only what the
            hook leaves; an instance the hook refuses (:class:`InputError`, e.g. burned-in annotation) refuses the
            series.

    Returns:
        The 3D image (RAS mm; ``meta["source"]`` is the series address, or the server's root when a hook
        changed the instances) and the *original* source datasets without their pixel data (for a DICOM SEG that
        references the series on the PACS). The temporary folder is removed.

    Raises:
        InputError / GeometryError: As ``read_dicom_series``, or a series refused by the hook;
        PacsError: as :meth:`PacsClient.retrieve_series`; ConfigError: both ``deidentifier`` and ``dataset_hook``,
        or ``settings.deidentify`` without either.
    """
    from medannot.io.dicom import read_dicom_series

    if deidentifier is not None:
        if dataset_hook is not None:
            raise ConfigError("give dataset_hook or deidentifier, not both")
        dataset_hook = deidentifier.deidentify
    _check_hook(settings or PacsSettings(), dataset_hook)
    if location.series_uid is None:
        raise InputError(f"{location.url} names no series; expected .../studies/UID/series/UID")
    originals = PacsClient.for_location(location, settings).retrieve_series(location.study_uid, location.series_uid)
    local = originals
    if dataset_hook is not None:
        try:
            local = [dataset_hook(ds) for ds in originals]
        except InputError as exc:
            raise type(exc)(f"{location.url}: not de-identified, so not annotated: {exc.reason}") from None
    with tempfile.TemporaryDirectory(prefix="medannot-wado-") as tmp:
        paths = write_instances(local, Path(tmp))
        try:
            image = read_dicom_series(paths, kind=kind)  # the folder holds this one series
        except InputError as exc:
            raise type(exc)(f"{location.url}: {exc.reason}") from None
    for ds in originals:  # headers suffice for a SEG; do not keep a second copy of the pixels
        for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if keyword in ds:
                delattr(ds, keyword)
    image.meta["source"] = location.url if dataset_hook is None else f"dicomweb+{location.base_url} (de-identified series)"
    image.meta["format"] = "dicomweb"
    image.meta.pop("skipped", None)
    return image, originals
