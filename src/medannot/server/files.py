"""Content-addressed file storage under the data folder.

Every stored file (case image, label mask, draft, original upload) is named by the SHA-256 of its bytes:
``DATA/blobs/ab/abcdef....<suffix>``. Names never come from user input, identical content is stored
once, and a write is atomic (temporary file + fsync + rename, :mod:`medannot.io.atomic`), so a crash
leaves either the old state or the complete file, and concurrent writers of the same bytes agree.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from medannot.errors import InputError
from medannot.io.atomic import atomic_write_bytes

_SHA = re.compile(r"^[0-9a-f]{64}$")
SUFFIXES = (".nii.gz", ".bin")


class BlobStore:
    """Files named by their SHA-256 under ``root/blobs``.

    Args:
        root: The server's data folder.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "blobs"

    def path(self, sha256: str, suffix: str = ".nii.gz") -> Path:
        """Where the blob with this digest lives.

        Raises:
            InputError: If ``sha256`` is not 64 lower-case hex digits or the suffix is not a known one.
        """
        if not _SHA.match(sha256) or suffix not in SUFFIXES:
            raise InputError(f"not a blob name: {sha256!r}{suffix}")
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def put(self, data: bytes, suffix: str = ".nii.gz") -> str:
        """Store ``data`` (atomically, once) and return its SHA-256 hex digest."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest, suffix)
        if not target.is_file() or target.stat().st_size != len(data):
            atomic_write_bytes(target, data)
        return digest

    def get(self, sha256: str, suffix: str = ".nii.gz") -> bytes:
        """The bytes of a stored blob.

        Raises:
            InputError: If it is missing.
        """
        target = self.path(sha256, suffix)
        if not target.is_file():
            raise InputError("stored file is missing; the data folder is incomplete", target)
        return target.read_bytes()
