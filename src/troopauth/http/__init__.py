"""The tokens surface over HTTP (extra ``troopauth[http]``).

:func:`create_app` builds a Starlette application to mount under any prefix of
a host application, or to run alone: a JSON API for every management call,
its OpenAPI 3.1 document at ``/openapi.json``, RFC 7662 introspection at
``/introspect`` and the page for people at ``/``. :func:`serve` runs it with
uvicorn over a SQLite file.

This module only re-exports; each concern lives in a module of its own
(``routes``, ``pages``, ``problems``, ``openapi``, ``bodies``, ``scanning``,
``server``).
"""

try:
    import cryptography as _cryptography  # noqa: F401 (secret-scanning signatures)
    import jinja2 as _jinja2  # noqa: F401 (checked here: the page needs it)
    import starlette as _starlette  # noqa: F401 (checked here: the app is one)
except ImportError as exc:
    from .._extras import missing_extra

    raise missing_extra("troopauth.http", "http", exc) from exc

from .app import DEFAULT_MAX_BODY as DEFAULT_MAX_BODY
from .app import RefuseValuesInURL as RefuseValuesInURL
from .app import create_app as create_app
from .routes import ActorHook as ActorHook
from .scanning import ScanningKeys as ScanningKeys
from .server import serve as serve

__all__ = [
    "DEFAULT_MAX_BODY",
    "ActorHook",
    "RefuseValuesInURL",
    "ScanningKeys",
    "create_app",
    "serve",
]
