"""Similar-case retrieval: feature vectors (model embedding + classical features + annotation text) and an exact index."""

from medannot.retrieval.features import FeatureExtractor
from medannot.retrieval.index import Index, build_index, load_index, precision_at_k, search

__all__ = ["FeatureExtractor", "Index", "build_index", "load_index", "precision_at_k", "search"]
