"""Tests of troopauth.django: the store under the kit, DRF, the decorator."""
