"""The example shop's settings: Django, DRF and troopauth.django over SQLite.

``SHOP_DB`` names the database file (default: ``db.sqlite3`` here).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-not-a-secret"  # noqa: S105 (an example's placeholder)
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
USE_TZ = True
ROOT_URLCONF = "shop.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "troopauth.django",
]
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "troopauth.django.rest_framework.TroopTokenAuthentication"
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "troopauth.django.rest_framework.HasTroopPermission"
    ],
}
TROOPAUTH = {"REALM": "shop"}
