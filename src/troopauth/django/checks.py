"""System checks: what ``DjangoStore`` needs from the project's settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register()
def check_use_tz(app_configs: Any = None, **_: Any) -> list[checks.CheckMessage]:
    """``USE_TZ`` must be True: troopauth's datetimes are timezone-aware."""
    if getattr(settings, "USE_TZ", False):
        return []
    return [
        checks.Error(
            "troopauth.django needs USE_TZ = True (its datetimes are "
            "timezone-aware, stored in UTC)",
            id="troopauth.E001",
        )
    ]
