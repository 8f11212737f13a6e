"""tests/fuzz: the corpus modules (fuzz_corpus, fuzz_nifti, ...) import by name from this folder.

``fuzz_corpus`` (session): the corpus written once into a temporary folder, ``(root, entries)``; deleted at the end
of the session (it holds trees 1,000 folders deep, which pytest's own clean-up of old temporary folders cannot
delete: every later session would end with a RecursionError).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fuzz_corpus(tmp_path_factory: pytest.TempPathFactory):
    from fuzz_corpus import build_corpus, remove_tree

    root = tmp_path_factory.mktemp("fuzzcorpus") / "corpus"
    entries = build_corpus(root)
    yield Path(root), entries
    remove_tree(root.parent)
