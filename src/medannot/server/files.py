"""Content-addressed file storage under the data folder.

Every stored file (case image, label mask, draft, original upload) is named by the SHA-256 of its bytes:
``DATA/blobs/ab/abcdef....<suffix>``. Names never come from user input, identical content is stored
once, and a write is atomic (temporary file + fsync + rename, as :mod:`medannot.io.atomic`), so a crash
leaves either the old state or the complete file, and concurrent writers of the same bytes agree.
Files are created readable by the server's user only (0600) in folders only it may enter (0700).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from medannot.errors import InputError, OutputError
from medannot.io.atomic import temporary_sibling

FILE_MODE = 0o600
FOLDER_MODE = 0o700

_SHA = re.compile(r"^[0-9a-f]{64}$")
SUFFIXES = (".nii.gz", ".bin")


def private_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and parents) if needed and make it 0700 (only the server's user may enter it)."""
    path = Path(folder)
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    try:
        os.chmod(path, FOLDER_MODE)
    except OSError:  # not ours (e.g. a shared mount): leave it, the files inside are still 0600
        pass
    return path


def write_private(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (temporary 0600 file, fsync, rename, fsync of the folder).

    Raises:
        OutputError: The file cannot be written.
    """
    tmp = temporary_sibling(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot store a file ({exc.strerror or type(exc).__name__}); check the data folder's space "
                          "and permissions", target.parent) from None


class BlobStore:
    """Files named by their SHA-256 under ``root/blobs``.

    Args:
        root: The server's data folder.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "blobs"
        private_folder(self.root)

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
            private_folder(target.parent)
            write_private(target, data)
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
