"""Helpers for running medannot against real external services in tests and demos (a local Orthanc PACS)."""
