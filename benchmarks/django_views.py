"""A DRF view behind troopauth, django-rest-knox and djangorestframework-api-key.

Section ``django`` of ``python -m benchmarks``.

One Django project, one database (a SQLite file; then a PostgreSQL database
of its own, ``<schema>_django_<random>``, dropped at the end), the same
trivial DRF view four times over:

* ``DRF, no auth``: no authentication, ``AllowAny`` (DRF's own cost, the floor);
* ``troopauth``: ``TroopTokenAuthentication`` + ``HasTroopPermission`` (EDIT on
  one key of a troop; the tokens hold the grant mix of the other sections);
* ``knox``: django-rest-knox ``TokenAuthentication`` + ``IsAuthenticated``
  (one user per token: knox reads all of a user's tokens on each request);
* ``api-key``: djangorestframework-api-key ``HasAPIKey``;

and ``TroopAuth(DjangoStore()).verify`` alone, without DRF. Each view is
called in-process (a prepared ``WSGIRequest`` per token, built with DRF's
``APIRequestFactory``, handed to the view function; no HTTP server, no
rendering), over many distinct tokens per pass (1,000 of each; quick 50),
passes interleaved, their order alternating. Every call must answer 200
(checked once before timing). The figure is the median over passes of the
mean µs per request, and its ratio to troopauth's.

Django is configured once per process, and only here: each database runs in
a child process (``python -m benchmarks.django_views``), so that no Django
settings leak into the other sections of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._common import GRANT_MIX, KEY, Phases, mark, micros, progress, table
from .options import Options

#: The rows of the table, in order; ratios are to TROOPAUTH.
FLOOR = "DRF, no auth"
TROOPAUTH = "troopauth"
KNOX = "knox"
API_KEY = "api-key"
VERIFY = "DjangoStore verify"
CASES = (FLOOR, TROOPAUTH, KNOX, API_KEY, VERIFY)


# -- the child: one database, Django configured ---------------------------------------


def _configure(database: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="troopauth-benchmarks-only",  # noqa: S106 (a throwaway project)
        USE_TZ=True,
        TIME_ZONE="UTC",
        ALLOWED_HOSTS=["testserver"],
        DATABASES={"default": database},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework",
            "knox",
            "rest_framework_api_key",
            "troopauth.django",
        ],
        MIDDLEWARE=[],
        ROOT_URLCONF=__name__,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        REST_FRAMEWORK={"UNAUTHENTICATED_USER": None},
        TROOPAUTH={"REALM": "bench"},
    )
    django.setup()


#: Django wants a URLconf; the views are called directly.
urlpatterns: list[Any] = []


def _seed(tokens: int) -> tuple[str, dict[str, list[str]]]:
    """*tokens* credentials of each kind; the troop id and the header values."""
    from django.contrib.auth.models import User
    from django.db import transaction
    from knox.models import AuthToken  # type: ignore[import-untyped]
    from rest_framework_api_key.models import APIKey

    from troopauth import Grant
    from troopauth.django import get_auth

    auth = get_auth()
    with transaction.atomic():
        account = auth.create_account(seats=tokens + 10)
        troop = auth.create_troop(account.id, "bench").id
        owner = auth.authenticate(auth.issue_personal_token(account.id).value)
        grants = [Grant.parse(p, s) for _, p, s in GRANT_MIX]
        troop_values = [
            auth.issue_token(owner, troop, grants[i % len(grants)]).value
            for i in range(tokens)
        ]
        User.objects.bulk_create(User(username=f"bench{i}") for i in range(tokens))
        users = User.objects.filter(username__startswith="bench").order_by("id")
        knox_values = [AuthToken.objects.create(user=u)[1] for u in users]
        key_values = [
            APIKey.objects.create_key(name=f"bench{i}")[1] for i in range(tokens)
        ]
    auth.flush_last_used()
    return troop, {
        TROOPAUTH: [f"Bearer {v}" for v in troop_values],
        KNOX: [f"Token {v}" for v in knox_values],
        API_KEY: [f"Api-Key {v}" for v in key_values],
    }


def _views(troop: str) -> dict[str, Callable[..., Any]]:
    from knox.auth import TokenAuthentication  # type: ignore[import-untyped]
    from rest_framework.permissions import AllowAny, IsAuthenticated
    from rest_framework.response import Response
    from rest_framework.views import APIView
    from rest_framework_api_key.permissions import HasAPIKey

    from troopauth import Permission
    from troopauth.django.rest_framework import (
        HasTroopPermission,
        TroopTokenAuthentication,
    )

    class Floor(APIView):
        authentication_classes: Sequence[Any] = ()
        permission_classes: Sequence[Any] = (AllowAny,)

        def get(self, request: Any) -> Response:
            return Response({"ok": True})

    class Troop(Floor):
        authentication_classes = (TroopTokenAuthentication,)
        permission_classes = (HasTroopPermission,)
        troopauth_permission = Permission.EDIT
        troopauth_troop = troop
        troopauth_key = KEY

    class Knox(Floor):
        authentication_classes = (TokenAuthentication,)
        permission_classes = (IsAuthenticated,)

    class ApiKey(Floor):
        permission_classes = (HasAPIKey,)

    return {
        FLOOR: Floor.as_view(),
        TROOPAUTH: Troop.as_view(),
        KNOX: Knox.as_view(),
        API_KEY: ApiKey.as_view(),
    }


def _pass(call: Callable[[Any], Any], items: Sequence[Any]) -> float:
    """Mean nanoseconds per call over one pass of *items*."""
    clock = time.perf_counter_ns
    start = clock()
    for item in items:
        call(item)
    return (clock() - start) / len(items)


def _child(database: dict[str, Any], tokens: int, repeats: int, seed: int) -> Any:
    _configure(database)
    from django.core.management import call_command
    from rest_framework.test import APIRequestFactory

    from troopauth import Permission, TroopAuth
    from troopauth.django.store import DjangoStore

    call_command("migrate", verbosity=0, interactive=False)
    progress(f"django: seeding {tokens:,} tokens of each kind")
    troop, headers = _seed(tokens)
    rnd = random.Random(seed)
    for values in headers.values():
        rnd.shuffle(values)
    factory = APIRequestFactory()
    views = _views(troop)
    requests = {
        name: [
            factory.get("/bench", HTTP_AUTHORIZATION=h)
            for h in headers[TROOPAUTH if name == FLOOR else name]
        ]
        for name in views
    }
    auth = TroopAuth(DjangoStore())
    values = [h.split(" ", 1)[1] for h in headers[TROOPAUTH]]
    edit = Permission.EDIT

    def verify(value: str) -> object:
        return auth.verify(value, troop, edit, key=KEY)

    calls: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]] = {
        name: (views[name], requests[name]) for name in views
    }
    calls[VERIFY] = (verify, values)
    for name, (call, items) in calls.items():  # warm up; every call succeeds
        for item in items:
            answer = call(item)
            if name != VERIFY and answer.status_code != 200:
                raise SystemExit(f"{name}: HTTP {answer.status_code}")
    passes: dict[str, list[float]] = {name: [] for name in CASES}
    order = list(CASES)
    for _ in range(repeats):
        for name in order:
            call, items = calls[name]
            passes[name].append(_pass(call, items))
        order.reverse()
    return {"tokens": tokens, "passes": passes}


def child_main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.django_views``: one database's figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.django_views")
    parser.add_argument("--database", required=True, help="a DATABASES entry (JSON)")
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", required=True, help="where to write the JSON")
    args = parser.parse_args(argv)
    figures = _child(json.loads(args.database), args.tokens, args.repeats, args.seed)
    Path(args.out).write_text(json.dumps(figures))
    return 0


# -- the parent: one child per database -----------------------------------------------


def _spawn(database: dict[str, Any], tokens: int, repeats: int, seed: int) -> Any:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "figures.json"
        done = subprocess.run(  # noqa: S603 (this interpreter, our module)
            [
                sys.executable,
                "-m",
                "benchmarks.django_views",
                "--database",
                json.dumps(database),
                "--tokens",
                str(tokens),
                "--repeats",
                str(repeats),
                "--seed",
                str(seed),
                "--out",
                str(out),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the django benchmark child exited {done.returncode}")
        return json.loads(out.read_text())


def _postgres_database(dsn: str, name: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    pg = conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": pg.get("user", "postgres"),
        "PASSWORD": pg.get("password", ""),
        "HOST": pg.get("host", "127.0.0.1"),
        "PORT": str(pg.get("port", "5432")),
        # the lookup's statement is prepared (as docs/django.md recommends)
        "OPTIONS": {"prepare_threshold": 5},
    }


def _summary(figures: Any) -> list[dict[str, Any]]:
    passes = figures["passes"]
    base = statistics.median(passes[TROOPAUTH])
    return [
        {
            "check": name,
            "median_ns": statistics.median(passes[name]),
            "min_ns": min(passes[name]),
            "x_troopauth": statistics.median(passes[name]) / base,
            "passes_ns": passes[name],
        }
        for name in CASES
    ]


def run(opts: Options, phases: Phases) -> dict[str, Any]:
    """The four views and the verify on SQLite, then on PostgreSQL."""
    repeats = opts.repeats or (3 if opts.quick else 11)
    tokens = 50 if opts.quick else 1_000
    results: dict[str, Any] = {"tokens": tokens, "repeats": repeats, "databases": {}}
    with (
        phases("django: SQLite"),
        tempfile.TemporaryDirectory(dir=opts.tmpdir) as d,
    ):
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(Path(d) / "django.sqlite3"),
            "OPTIONS": {
                "timeout": 60,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            },
        }
        figures = _spawn(database, tokens, repeats, opts.seed)
        results["databases"]["SQLite"] = _summary(figures)
    if opts.postgres is None:
        results["postgres_skipped"] = "--no-postgres"
        return results
    try:
        import psycopg

        with psycopg.connect(opts.postgres, autocommit=True, connect_timeout=5):
            pass
    except Exception as exc:  # noqa: BLE001 (any failure: leave it out, say why)
        results["postgres_skipped"] = f"PostgreSQL unreachable ({type(exc).__name__})"
        return results
    name = f"{opts.schema}_django_{secrets.token_hex(3)}"
    with psycopg.connect(opts.postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with phases("django: PostgreSQL"):
            figures = _spawn(
                _postgres_database(opts.postgres, name), tokens, repeats, opts.seed
            )
            results["databases"]["PostgreSQL"] = _summary(figures)
    finally:
        with psycopg.connect(opts.postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


def report(results: dict[str, Any]) -> None:
    """Print the table, and whether troopauth beats both peers on each database."""
    print(
        "\nDJANGO: a DRF view called in-process, per request "
        f"({results['tokens']:,} distinct tokens each, median of "
        f"{results['repeats']} passes)\n"
    )
    rows = [
        [
            database,
            r["check"],
            micros(r["median_ns"]),
            micros(r["min_ns"]),
            f"{r['x_troopauth']:.2f}x",
        ]
        for database, summary in results["databases"].items()
        for r in summary
    ]
    print(table(["database", "check", "median us", "min us", "x troopauth"], rows))
    if "postgres_skipped" in results:
        print(f"\nPostgreSQL left out: {results['postgres_skipped']}")
    print("\nTarget: troopauth's DRF authentication + permission faster than both\n")
    marks = []
    for database, summary in results["databases"].items():
        by = {r["check"]: r["median_ns"] for r in summary}
        ok = by[TROOPAUTH] < min(by[KNOX], by[API_KEY])
        marks.append([database, f"{by[TROOPAUTH] / 1000:.1f} us", mark(ok)])
    print(table(["database", "troopauth", "mark"], marks))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(child_main())
