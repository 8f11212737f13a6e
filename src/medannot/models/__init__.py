"""Segmentation networks by name and trained-model bundles."""

from medannot.models.bundle import Bundle, list_bundles
from medannot.models.registry import create_network, get_network_spec, list_networks, register_network

__all__ = ["Bundle", "create_network", "get_network_spec", "list_bundles", "list_networks", "register_network"]
