"""Atomic file output: a killed run never leaves a half-written file behind.

Everything is first written to a hidden temporary file in the destination
folder (``.name.tmp-XXXX``), flushed to disk with ``fsync`` and then renamed
onto the final name with :func:`os.replace`, which is atomic on POSIX and on
Windows when both paths are on the same file system (guaranteed here because
the temporary file lives in the same folder).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from medannot.errors import OutputError

__all__ = ["atomic_folder", "atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # Persist the rename itself; not possible on every platform (e.g. Windows), so best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_sibling(final_path: str | Path) -> Path:
    """A fresh hidden temporary path next to ``final_path`` that keeps its suffixes.

    The name is ``.<name>.tmp-<random><suffixes>`` so that libraries choosing a
    format by suffix (``.nii.gz``, ``.png``) still see the right one.
    """
    final = Path(final_path)
    suffixes = "".join(final.suffixes[-2:]) if final.name.endswith((".nii.gz", ".tar.gz")) else final.suffix
    return final.with_name(f".{final.name}.tmp-{secrets.token_hex(4)}{suffixes}")


@contextlib.contextmanager
def atomic_folder(final_folder: str | Path, what: str = "output folder") -> Iterator[Path]:
    """Yield an empty hidden staging folder; on success it replaces ``final_folder`` in one rename.

    A previous ``final_folder`` is renamed aside first and deleted after the swap, so readers see
    either the old folder or the complete new one. If the block raises, the staging folder is removed
    and ``final_folder`` is left as it was.

    Args:
        final_folder: Destination folder (its parent is created as needed).
        what: Name of the output in error messages (``"index"``, ``"annotation folder"``).

    Raises:
        OutputError: The folder cannot be created, written or renamed (the block's ``OSError``).
    """
    final = Path(final_folder)
    staging = final.with_name(f".{final.name}.tmp-{secrets.token_hex(4)}")
    try:
        staging.mkdir(parents=True)
        yield staging
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
            final.rename(old)
        staging.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot write the {what}: {exc.strerror or exc}", final) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_path(final_path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it is fsynced and renamed onto ``final_path``.

    The caller writes the complete output to the yielded path (which does not
    exist yet). If the block raises, the temporary file is removed and
    ``final_path`` is left untouched (an older version stays intact). Parent
    folders are created as needed.

    Args:
        final_path: Destination file.

    Yields:
        A temporary path in the same folder, with the same suffix(es).

    Raises:
        OutputError: If the folder cannot be created, or the block wrote nothing
            to the temporary path, or flushing or renaming the finished file fails (any ``OSError``
            there, e.g. ``PermissionError``, becomes an ``OutputError``; the temporary file is removed).
            An ``OSError`` raised by the block itself propagates unchanged.
    """
    final = Path(final_path)
    if final.is_dir():
        raise OutputError("expected a file path to write, received an existing folder; pass a file name", final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder ({exc.strerror or exc}); check permissions", final.parent) from exc
    tmp = temporary_sibling(final)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError("nothing was written to the temporary file; the writer failed silently", final)
        try:
            _fsync_file(tmp)
            os.replace(tmp, final)
        except OSError as exc:  # e.g. PermissionError on the folder, or a folder created at ``final`` meanwhile
            raise OutputError(
                f"cannot move the finished file into place ({exc.strerror or exc}); check the folder is writable", final
            ) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(final.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path.

    Raises:
        OutputError: If the file cannot be written.
    """
    final = Path(path)
    try:
        with atomic_path(final) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write the file ({exc.strerror or exc}); check the folder exists and is writable", final) from exc
    return final


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 by default) and return the path.

    Raises:
        OutputError: If the file cannot be written.
    """
    return atomic_write_bytes(path, text.encode(encoding))
