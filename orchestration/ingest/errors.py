"""The one exception ingest raises for bad input."""

from __future__ import annotations


class IngestError(Exception):
    """A file cannot be loaded. The message is one paragraph: the file, the problem, what was expected.

    Raised before anything is written, or after the load's transaction was rolled back, so the
    ``raw`` tables are never left half-loaded.
    """
