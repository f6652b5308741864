"""Tests of troopauth.http: the tokens surface over HTTP."""
