"""The page for people: the tokens surface, server-rendered, over the JSON API.

``GET /`` renders one Jinja2 template; a small plain script (``static/app.js``)
calls the JSON API with the bearer token the person pastes, held in the page's
``sessionStorage`` (no cookies, so no CSRF). The page carries a strict Content
Security Policy: its own script and style only, no inline code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

__all__ = ["HEADERS", "page_routes"]

_HERE = Path(__file__).resolve().parent

#: The security headers of the page.
HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.PackageLoader("troopauth.http", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)


async def index(request: Request) -> Response:
    """``GET /``: the tokens surface."""
    root = request.scope.get("root_path", "").rstrip("/")
    return _templates.TemplateResponse(
        request, "index.html", {"api_root": root}, headers=HEADERS
    )


def page_routes() -> list[BaseRoute]:
    """The page and its static files, relative to the mount point."""
    return [
        Route("/", index, methods=["GET"], name="page"),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
