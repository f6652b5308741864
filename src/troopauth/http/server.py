"""``serve``: run the tokens surface with uvicorn over a SQLite file."""

from __future__ import annotations

import logging
import os

from ..auth import TroopAuth
from ..errors import redact
from ..sqlite import SQLiteStore
from .app import create_app

__all__ = ["RedactingFilter", "serve"]


class RedactingFilter(logging.Filter):
    """A logging filter that redacts anything shaped like a token value from a
    record's message and arguments (uvicorn's access log prints the URL; the
    app refuses values in URLs, and this keeps them out of the log too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drop it."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact(a) if isinstance(a, str) else a for a in record.args
            )
        return True


def serve(
    db_path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Serve the tokens surface (page at ``/``) over the SQLite file *db_path*
    until interrupted. Needs the ``troopauth[http]`` extra (uvicorn)."""
    import uvicorn  # noqa: PLC0415 (imported where it is needed: serving only)

    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactingFilter())
    with SQLiteStore(db_path) as store:
        app = create_app(TroopAuth(store))
        uvicorn.run(app, host=host, port=port, server_header=False)
