"""troopauth as a Django app: ``INSTALLED_APPS = [..., "troopauth.django"]``.

Install the extra: ``pip install 'troopauth[django]'`` (Django and Django REST
framework). What it brings:

* models and migrations for every record, and
  :class:`~troopauth.django.store.DjangoStore`, a store over the ORM in the
  project's own database (:mod:`troopauth.django.store`);
* one ``TROOPAUTH`` settings dict, read lazily, and the project's
  :class:`~troopauth.TroopAuth` built from it (:func:`get_auth`);
* Django REST framework glue (:mod:`troopauth.django.rest_framework`) and a
  view decorator for plain Django (:mod:`troopauth.django.decorators`).
"""

from __future__ import annotations

from .conf import get_auth as get_auth
from .conf import troopauth_settings as troopauth_settings

__all__ = ["get_auth", "troopauth_settings"]
