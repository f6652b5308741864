"""The Django project the tests run: settings, configured once per process.

Databases (one of each per test run, made fresh):

* ``default``: SQLite in WAL mode, Django's default ``DEFERRED`` transactions
  (the store takes SQLite's write lock itself);
* ``immediate``: SQLite with ``"transaction_mode": "IMMEDIATE"``;
* ``postgres``: a database of its own (``troopauth_django_<random>``) on the
  server named by ``TROOPAUTH_TEST_POSTGRES``, dropped at the end.

Child processes (the kit's process races) call :func:`open_store`, which
configures Django from the same databases.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from ..conftest import POSTGRES_DSN

#: The migrations of the apps below, once per database of a run.
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "rest_framework",
    "troopauth.django",
]


def databases() -> dict[str, dict[str, Any]]:
    """Fresh databases for one test run (files in a new temporary folder)."""
    folder = Path(tempfile.mkdtemp(prefix="troopauth-django-"))
    pg = conninfo_to_dict(POSTGRES_DSN)
    sqlite_options = {
        "timeout": 60,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
    }
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(folder / "default.sqlite3"),
            "OPTIONS": sqlite_options,
        },
        "immediate": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(folder / "immediate.sqlite3"),
            "OPTIONS": {**sqlite_options, "transaction_mode": "IMMEDIATE"},
        },
        "postgres": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": f"troopauth_django_{secrets.token_hex(6)}",
            "USER": pg.get("user", "postgres"),
            "PASSWORD": pg.get("password", ""),
            "HOST": pg.get("host", "127.0.0.1"),
            "PORT": str(pg.get("port", "5432")),
            # prepared statements (docs/django.md recommends it without a
            # transaction-pooling PgBouncer): the lookup's statement is prepared
            "OPTIONS": {"prepare_threshold": 5},
        },
    }


def settings_for(dbs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The settings of the test project over *dbs*."""
    return {
        "DEBUG": False,
        "SECRET_KEY": "troopauth-tests-only",
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "ALLOWED_HOSTS": ["testserver"],
        "DATABASES": dbs,
        "INSTALLED_APPS": INSTALLED_APPS,
        "ROOT_URLCONF": "tests.django.urls",
        "MIDDLEWARE": [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "TROOPAUTH": {"REALM": "tests"},
    }


def configure(dbs: dict[str, dict[str, Any]]) -> None:
    """Configure Django for *dbs* in this process (once)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**settings_for(dbs))
        django.setup()


def open_store(alias: str, dbs: dict[str, dict[str, Any]]) -> Any:
    """A DjangoStore on *alias* (in a child process: configure Django first)."""
    configure(dbs)
    from troopauth.django.store import DjangoStore

    return DjangoStore(using=alias)
