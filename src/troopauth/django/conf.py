"""The ``TROOPAUTH`` settings dict, read lazily, and the project's `TroopAuth`.

::

    TROOPAUTH = {
        # which store: a dotted path or a callable returning a Store
        "STORE": "troopauth.django.store.DjangoStore",
        "STORE_OPTIONS": {},        # keywords for it, e.g. {"using": "default"}
        "AUTH_OPTIONS": {},         # keywords for TroopAuth, e.g. {"clock": ...}
        "KEYWORD": "Bearer",        # the Authorization scheme read
        "REALM": "api",             # the realm of the WWW-Authenticate challenge
    }

Every key is optional. Nothing is read at import time: the settings are read
when first used, and again after Django's ``setting_changed`` signal names
``TROOPAUTH`` (``override_settings`` in tests), which also closes the store
built from the old settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .._web import check_realm
from ..auth import TroopAuth
from ..errors import InvalidArgument
from ._http import Gate

__all__ = ["DEFAULTS", "get_auth", "troopauth_settings"]

#: Every key of ``TROOPAUTH`` and its default.
DEFAULTS: Final[Mapping[str, Any]] = {
    "STORE": "troopauth.django.store.DjangoStore",
    "STORE_OPTIONS": {},
    "AUTH_OPTIONS": {},
    "KEYWORD": "Bearer",
    "REALM": "api",
}


class Settings:
    """``settings.TROOPAUTH`` over :data:`DEFAULTS`, read on first access."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        given = getattr(settings, "TROOPAUTH", None) or {}
        if not isinstance(given, Mapping):
            raise ImproperlyConfigured("settings.TROOPAUTH must be a dict")
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            raise ImproperlyConfigured(
                f"settings.TROOPAUTH has unknown keys {unknown}; "
                f"known: {sorted(DEFAULTS)}"
            )
        merged = {**DEFAULTS, **given}
        keyword = merged["KEYWORD"]
        if not isinstance(keyword, str) or not keyword.isalnum():
            raise ImproperlyConfigured("TROOPAUTH['KEYWORD'] must be one word")
        try:
            check_realm(merged["REALM"])
        except InvalidArgument as exc:
            raise ImproperlyConfigured(f"TROOPAUTH['REALM']: {exc}") from None
        return merged

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(name)
        cache = self._cache
        if cache is None:
            cache = self._cache = self._load()
        return cache[name]

    def reload(self) -> None:
        """Forget what was read (the next access reads the settings again)."""
        self._cache = None


#: The settings, with defaults: ``troopauth_settings.REALM``.
troopauth_settings = Settings()


class _Built:
    """The facade built from the settings (one per process), and its lock."""

    auth: TroopAuth | None = None
    gate: Gate | None = None
    lock = threading.Lock()


def _store_factory() -> Callable[..., Any]:
    store = troopauth_settings.STORE
    if isinstance(store, str):
        try:
            return import_string(store)  # type: ignore[no-any-return]
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"TROOPAUTH['STORE'] names {store!r}, which cannot be imported"
            ) from exc
    if not callable(store):
        raise ImproperlyConfigured(
            "TROOPAUTH['STORE'] must be a dotted path or a callable"
        )
    return store  # type: ignore[no-any-return]


def get_auth() -> TroopAuth:
    """The project's `TroopAuth`, over the store ``TROOPAUTH`` names (built
    once, on first use; rebuilt after the settings change)."""
    found = _Built.auth
    if found is not None:
        return found
    with _Built.lock:
        if _Built.auth is None:
            store = _store_factory()(**troopauth_settings.STORE_OPTIONS)
            _Built.auth = TroopAuth(store, **troopauth_settings.AUTH_OPTIONS)
        return _Built.auth


def get_gate() -> Gate:
    """The facade with the keyword and realm of the settings (internal: what
    the DRF classes and the decorator use)."""
    found = _Built.gate
    if found is not None:
        return found
    auth = get_auth()
    with _Built.lock:
        if _Built.gate is None:
            _Built.gate = Gate(
                auth,
                keyword=troopauth_settings.KEYWORD,
                realm=troopauth_settings.REALM,
            )
        return _Built.gate


def reset() -> None:
    """Forget the settings read and close the store built from them."""
    with _Built.lock:
        old, _Built.auth, _Built.gate = _Built.auth, None, None
        troopauth_settings.reload()
    if old is not None:
        old.store.close()


@receiver(setting_changed)
def _setting_changed(*, setting: str, **_: Any) -> None:
    if setting == "TROOPAUTH":
        reset()
