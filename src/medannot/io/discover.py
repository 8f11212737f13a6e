"""Turn a path (file, DICOM folder, folder of images, dataset folder) into named input cases.

``discover_inputs`` only lists and names; nothing is decoded until ``InputItem.load()``,
so a batch can report and skip one broken case without stopping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medannot.data.case import Case
from medannot.data.image import ImageKind
from medannot.errors import InputError, MedannotError
from medannot.io._common import (
    DICOM_SUFFIXES,
    INV3_SUFFIXES,
    ITK_SUFFIXES,
    MGH_SUFFIXES,
    NIFTI_SUFFIXES,
    RASTER_SUFFIXES,
    is_hidden,
    special_file_reason,
    strip_image_suffix,
)

if TYPE_CHECKING:
    from medannot.io.dicomweb import DatasetHook, PacsSettings, RemoteSeries

__all__ = ["InputItem", "discover_inputs", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_IMAGE_SUFFIXES = NIFTI_SUFFIXES + RASTER_SUFFIXES + INV3_SUFFIXES + ITK_SUFFIXES + MGH_SUFFIXES


def safe_name(text: str, fallback: str = "case") -> str:
    """A plain file name: letters, digits, ``._+-`` (others become ``_``), no ``..``, no leading dots, <= 120 chars.

    Never empty (``fallback`` then), never ``.``/``..``, never holds a path separator.
    """
    name = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", str(text))).strip("._-")[:120].rstrip("._-")
    return name or fallback


@dataclass
class InputItem:
    """One input case, not yet read.

    Attributes:
        name: Safe case name (a plain file name), e.g. the file name without ``.nii.gz``.
        paths: The file(s) of the main image (several for multi-channel datasets or DICOM series).
        source: What the item came from: ``"file"``, ``"dicom-series"``, ``"dataset"`` or ``"dicomweb"``
            (a series on a PACS: no paths; ``remote`` says where it is, retrieved on ``load()``).
        label_path: Ground-truth label file (dataset cases), if any.
        series_uid: SeriesInstanceUID of a DICOM series item.
        meta: Plain values only (split, dataset name and label map, modality); never live objects.
        remote: For ``"dicomweb"`` items: the series' location, PACS settings and dataset hook
            (:class:`medannot.io.dicomweb.RemoteSeries`); None otherwise.
    """

    name: str
    paths: tuple[Path, ...]
    source: str = "file"
    label_path: Path | None = None
    series_uid: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    remote: RemoteSeries | None = None

    def load(self) -> Case:
        """Read the images into a :class:`Case` (``"image"``, plus ``"label"`` for labelled dataset cases).

        Raises:
            InputError: On any problem, with a one-line message starting with the offending path.
        """
        where = None if not self.paths else self.paths[0] if len(self.paths) == 1 else self.paths[0].parent
        try:
            return self._load()
        except MedannotError:
            raise
        except (OSError, ValueError, RuntimeError, TypeError, KeyError, IndexError, MemoryError, EOFError) as exc:
            raise InputError(f"cannot load case {self.name!r} ({type(exc).__name__}: {' '.join(str(exc).split())})", where) from None

    def _load(self) -> Case:
        from medannot.io import read_image
        from medannot.io.dataset import DatasetCase, load_dataset_case
        from medannot.io.dicom import read_dicom_series

        if self.source == "dataset":
            case = load_dataset_case(DatasetCase(self.name, self.paths, self.label_path, self.meta.get("split", "train")))
            case.meta.update(self.meta)
            return case
        if self.source == "dicom-series":
            image = read_dicom_series(list(self.paths), series_uid=self.series_uid)
        elif self.source == "dicomweb":
            if self.remote is None:
                raise InputError(f"DICOMweb case {self.name!r} has no remote series; make it with discover_inputs")
            image, headers = self.remote.load()
            ids = {k: str(image.meta[k]) for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID") if k in image.meta}
            return Case(self.name, {"image": image}, ids, dict(self.meta), files=(str(image.meta["source"]),), dicom_headers=tuple(headers))
        else:
            image = read_image(self.paths[0], kind=ImageKind.INTENSITY)
        ids = {k: str(image.meta[k]) for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID") if k in image.meta}
        return Case(self.name, {"image": image}, ids, dict(self.meta), files=tuple(str(p) for p in self.paths))


def _unique(items: list[InputItem]) -> list[InputItem]:
    seen: dict[str, int] = {}
    for it in items:
        base = it.name
        if base in seen:
            seen[base] += 1
            it.name = f"{base}_{seen[base]}"
            while it.name in seen:
                seen[base] += 1
                it.name = f"{base}_{seen[base]}"
        seen.setdefault(it.name, 1)
    return items


def _dicom_items(folder: Path, files: list[Path] | None, folder_name: str) -> tuple[list[InputItem], list[tuple[Path, str]]]:
    from medannot.io.dicom import scan_dicom_folder

    scan = scan_dicom_folder(folder if files is None else files)
    items = []
    several = len(scan.series) > 1
    for index, (uid, members) in enumerate(scan.series.items(), start=1):
        ds = members[0][1]
        if several:
            desc = str(ds.get("SeriesDescription", "") or "").strip()
            num = ds.get("SeriesNumber")
            num = "" if num is None or str(num) == "" else str(num)
            label = "_".join(x for x in (desc, num) if x) or f"series_{index}"
            name = safe_name(label, f"series_{index}")
        else:
            name = safe_name(folder_name, "series")
        meta = {"modality": str(ds.get("Modality", "") or "")}
        items.append(InputItem(name, tuple(p for p, _ in members), "dicom-series", None, uid, meta))
    return items, scan.skipped


def discover_inputs(path: str | Path, pacs_settings: PacsSettings | None = None, dataset_hook: DatasetHook | None = None) -> list[InputItem]:
    """List the cases found at ``path``.

    * a single image file (NIfTI, picture, DICOM file) -> one case named after the file;
    * a folder with ``dataset.json`` (MSD / nnU-Net raw) -> one case per training and test image
      (training cases carry their label);
    * a folder of image files -> one case per file, sorted; hidden and ``._`` files skipped;
    * DICOM files in the folder (searched recursively when it holds no image files) -> one case per series,
      named after the folder (one series) or ``SeriesDescription_SeriesNumber`` (several series);
    * a ``dicomweb+http(s)://HOST/ROOT/studies/UID[/series/UID]`` address (a ``str``) -> one case per image series
      of the study on that PACS (:func:`medannot.io.dicomweb.discover_dicomweb`), retrieved on ``load()``.

    Args:
        path: File or folder, or a DICOMweb address.
        pacs_settings: :class:`medannot.io.dicomweb.PacsSettings` (timeout, retries, deidentify) for DICOMweb addresses.
        dataset_hook: For DICOMweb addresses: a callable ``pydicom Dataset -> Dataset`` applied in memory to every
            retrieved instance before it touches the disk, e.g. ``medannot.privacy.Deidentifier().deidentify``
            (required when ``pacs_settings.deidentify``; one hook for the run keeps UIDs consistent across series).
            Ignored for local paths.

    Returns:
        Items in a stable order, with unique safe names. Skipped files are not returned (see ``scan_dicom_folder``).

    Raises:
        InputError: The path does not exist, or the folder holds no image.
        ConfigError: ``pacs_settings.deidentify`` without a ``dataset_hook`` (DICOMweb addresses).
    """
    from medannot.io.dataset import open_dataset
    from medannot.io.dicomweb import discover_dicomweb, is_dicomweb_url

    if is_dicomweb_url(path):
        remote = discover_dicomweb(str(path), pacs_settings, dataset_hook)
        return _unique([InputItem(r.name, (), "dicomweb", None, r.location.series_uid, {"modality": r.modality}, r) for r in remote])
    p = Path(path)
    special = special_file_reason(p)
    if special is not None:
        raise InputError(special, p)
    if not p.exists():
        raise InputError("input not found; check the path", p)
    if p.is_file():
        if p.name.startswith("._"):
            raise InputError("this is a macOS resource fork ('._' file), not an image; pass the file without '._'", p)
        return [InputItem(safe_name(strip_image_suffix(p.name)), (p,), "file")]
    if (p / "dataset.json").is_file():
        layout = open_dataset(p)
        items = [
            InputItem(
                safe_name(c.name), c.images, "dataset", c.label, None,
                {"split": c.split, "dataset": layout.name, "labels": dict(layout.labels)},
            )  # fmt: skip
            for c in layout.cases
        ]
        if not items:
            raise InputError("dataset.json lists no cases and imagesTr/ imagesTs/ hold no images", p)
        return _unique(items)
    children = sorted(c for c in p.iterdir() if c.is_file() and not is_hidden(c))
    pictures = [c for c in children if c.name.lower().endswith(_IMAGE_SUFFIXES)]
    others = [c for c in children if c not in pictures]
    items = [InputItem(safe_name(strip_image_suffix(c.name)), (c,), "file") for c in pictures]
    if pictures:
        dicom_like = [c for c in others if c.name.lower().endswith(DICOM_SUFFIXES) or "." not in c.name]
        if dicom_like:
            series, _ = _dicom_items(p, dicom_like, p.name)
            items += series
    else:
        series, skipped = _dicom_items(p, None, p.name)
        items += series
        if not items:
            why = "; ".join(f"{s.name}: {r}" for s, r in skipped[:3])
            raise InputError(
                f"no image found (expected NIfTI, PNG/JPEG/TIFF files, DICOM files or a dataset.json)"
                f"{'; skipped ' + why if why else ''}",
                p,
            )
    return _unique(items)
