"""Code reads typed fields, not ``meta`` string keys (issue 10: metadata as dataclasses, no live objects).

``Image.meta`` and ``Case.meta`` are notes for people (written to logs and JSON); a module that needs to know where an
image came from reads ``Case.files`` / ``Case.dicom_headers``, a validation case's ``instances``, an input item's
typed ``remote``. Only the readers that *write* meta (io, and annotations' DICOM SEG/RTSTRUCT readers, which keep the
segment names they read) may look at it while they build an image.
"""

import re
from pathlib import Path

import medannot

SRC = Path(medannot.__file__).resolve().parent
READS = re.compile(r"\.meta\s*\[\s*[\"']|\.meta\.get\(|[\"']\w+[\"']\s+(not\s+)?in\s+\w+(\.\w+)*\.meta\b")
WRITERS = {"io", "annotations", "server"}  # server: its own JSON metadata columns, not Image.meta


def test_no_module_outside_the_readers_reads_meta_keys():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        part = path.relative_to(SRC).parts[0].removesuffix(".py")
        if part in WRITERS:
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if READS.search(line):
                found.append(f"{path.relative_to(SRC.parent)}:{i}: {line.strip()}")
    assert not found, "read typed fields instead of meta keys:\n" + "\n".join(found)


def test_the_check_finds_a_read():
    assert READS.search('x = image.meta["instances"]') and READS.search("if 'skipped' in case.meta:")
    assert READS.search("image.meta.get('path')") and not READS.search("out.meta.setdefault('algorithm', 'x')")
