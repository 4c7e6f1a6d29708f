"""``certify bound``: the certificate's bound object from measured statistics."""

from __future__ import annotations

from certify.cli._app import app  # noqa: F401
