"""Fixtures shared by the evaluation tests."""

from eval_masks import mask_pair  # noqa: F401 - the pytest fixture, made visible to every test here
