"""Test-suite wide conftest. Its presence puts tests/ on sys.path, so shared helpers import by name
(``from iohelpers import write_dicom_series``)."""
