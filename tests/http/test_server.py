"""troopauth.http.serve: uvicorn over a SQLite file, in a process of its own."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from troopauth import Permission, SQLiteStore, TroopAuth
from troopauth.http import create_app
from troopauth.http.server import RedactingFilter

from .conftest import Live, bearer, free_port


def _wait_up(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("serve() exited early")
        try:
            httpx.get(base + "/openapi.json", timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
        else:
            return
    raise RuntimeError("serve() did not come up")


def test_serve_over_sqlite(tmp_path: Path):
    """serve() answers the page and the API over the file; the access log shows
    requests but never a token value, even one put in a URL."""
    db = tmp_path / "troopauth.db"
    with SQLiteStore(db) as store:
        auth = TroopAuth(store)
        account = auth.create_account(seats=2)
        troop = auth.create_troop(account.id, "payments")
        pat = auth.issue_personal_token(account.id)
    port = free_port()
    code = f"from troopauth.http import serve; serve({str(db)!r}, port={port})"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base, process)
        assert "Troop tokens" in httpx.get(base + "/").text
        issued = httpx.post(
            f"{base}/troops/{troop.id}/tokens",
            json={"grant": {"permissions": ["use"], "scope": "key:deploy"}},
            headers=bearer(pat),
        )
        assert issued.status_code == 201
        leaked = httpx.get(f"{base}/me?access_token={pat.value}")
        assert leaked.status_code == 400
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    with SQLiteStore(db) as store:
        TroopAuth(store).verify(
            issued.json()["value"], troop.id, Permission.USE, key="deploy"
        )
    assert "POST /troops/" in output
    assert "GET /me?access_token=cpt_pat_<redacted>" in output
    assert pat.value[8:] not in output
    assert issued.json()["value"][8:] not in output


def test_redacting_filter():
    """The filter redacts values in a record's message and arguments."""
    value = "cpt_pat_" + "a" * 36
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "x", 1, f"%s {value} %d", (value, 3), None
    )
    assert RedactingFilter().filter(record)
    assert value not in record.getMessage()
    assert record.getMessage() == "cpt_pat_<redacted> cpt_pat_<redacted> 3"


def test_race_for_the_last_seat_over_http(tmp_path: Path):
    """Requests racing for the last seat through the served app over SQLite:
    exactly one gets 201, the others 409, and the pool is full, not over."""
    with SQLiteStore(tmp_path / "race.db") as store:
        auth = TroopAuth(store)
        account = auth.create_account(seats=1)
        troop = auth.create_troop(account.id, "payments")
        pat = auth.issue_personal_token(account.id)
        statuses: list[int] = []
        with Live(create_app(auth)) as base:
            start = threading.Barrier(4)

            def issue() -> None:
                with httpx.Client(base_url=base, timeout=30) as client:
                    start.wait()
                    response = client.post(
                        f"/troops/{troop.id}/tokens",
                        json={"grant": {"permissions": ["view"], "scope": "*"}},
                        headers=bearer(pat),
                    )
                    statuses.append(response.status_code)

            threads = [threading.Thread(target=issue) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        assert sorted(statuses) == [201, 409, 409, 409]
        assert auth.seats(account.id).used == 1
        assert len(auth.tokens(troop.id)) == 1
