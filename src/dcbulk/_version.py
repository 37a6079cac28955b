"""The version of dcbulk (single source for packaging and provenance logs)."""
__version__ = "0.1.0"
