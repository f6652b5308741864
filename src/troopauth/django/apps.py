"""The Django application config of ``troopauth.django``."""

from __future__ import annotations

from django.apps import AppConfig


class TroopAuthConfig(AppConfig):
    """troopauth's records as Django models, in the project's own database.

    The app label is ``troopauth`` (tables ``troopauth_account``,
    ``troopauth_token``, ...); add ``"troopauth.django"`` to
    ``INSTALLED_APPS`` and run ``manage.py migrate``.
    """

    name = "troopauth.django"
    label = "troopauth"
    verbose_name = "troopauth"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect the settings-changed hook and register the system checks."""
        from . import checks, conf  # noqa: F401, PLC0415 (for their side effects, once apps are ready)
