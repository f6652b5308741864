"""An example Django project: a DRF view protected by troopauth (docs/django.md)."""
