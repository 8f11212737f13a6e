"""Workflows: whole jobs built from the lower layers (annotate a batch, the demo), used by the CLI and the server."""
