"""The listings and account calls over HTTP: troops, members, one token,
pages of a troop's tokens, seats, expiring tokens, rotation overlap.

Every answer here also passes the OpenAPI checks of the ``client`` fixture.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from troopauth import Grant, InvalidToken, MemoryStore, Permission, TroopAuth
from troopauth.http import create_app

from ..helpers import make_account, snapshot
from .conftest import World, bearer, checked_client


def _manager(world: World, troop_id: str, scope: str = "*") -> dict[str, str]:
    issued = world.auth.issue_token(
        world.owner, troop_id, Grant.parse("view,manage", scope)
    )
    return bearer(issued)


class TestTroops:
    """GET /accounts/{account_id}/troops."""

    def test_the_pat_sees_every_troop_oldest_first(self, world):
        """The PAT lists both troops with their names, in the facade's order
        (oldest first)."""
        acct = world.setup.account.id
        body = world.client.get(f"/accounts/{acct}/troops", headers=world.pat).json()
        listed = [(t["troop_id"], t["name"]) for t in body["troops"]]
        assert listed == [(t.id, t.name) for t in world.auth.troops(acct)]
        assert sorted(listed) == sorted(
            [(world.tid, "troop-0"), (world.tid2, "troop-1")]
        )

    def test_a_manager_sees_only_the_troops_it_manages(self, world):
        """A manager of the first troop sees that one; a key-scoped manager and
        a viewer see none."""
        acct = world.setup.account.id
        url = f"/accounts/{acct}/troops"
        body = world.client.get(url, headers=_manager(world, world.tid)).json()
        assert [t["troop_id"] for t in body["troops"]] == [world.tid]
        scoped = _manager(world, world.tid2, "key:a")
        assert world.client.get(url, headers=scoped).json() == {"troops": []}

    def test_another_account_is_404(self, world):
        """The troops of another account: 404."""
        other = make_account(world.auth)
        url = f"/accounts/{other.account.id}/troops"
        assert world.client.get(url, headers=world.pat).status_code == 404


class TestMembers:
    """GET /troops/{troop_id}/members."""

    def test_lists_members_and_grants(self, world):
        """Members added are listed by id with their grants."""
        for member, words in (("bob", "view"), ("alice", "view,edit")):
            world.auth.add_member(
                world.owner, world.tid, member, Grant.parse(words, "key:docs")
            )
        body = world.client.get(
            f"/troops/{world.tid}/members", headers=world.pat
        ).json()
        assert body == {
            "members": [
                {
                    "member_id": "alice",
                    "grant": {"permissions": ["view", "edit"], "scope": "key:docs"},
                },
                {
                    "member_id": "bob",
                    "grant": {"permissions": ["view"], "scope": "key:docs"},
                },
            ]
        }

    def test_needs_manage_and_hides_other_accounts(self, world):
        """A viewer: 403; a troop of another account: 404."""
        viewer = world.issue(permissions=("view", "edit"))
        url = f"/troops/{world.tid}/members"
        assert world.client.get(url, headers=bearer(viewer["value"])).status_code == (
            403
        )
        other = make_account(world.auth)
        response = world.client.get(f"/troops/{other.tid}/members", headers=world.pat)
        assert response.status_code == 404


class TestOneToken:
    """GET /tokens/{token_id}."""

    def test_reads_a_live_and_a_revoked_token(self, world):
        """The PAT reads a token, never its value; revoked, it still reads,
        marked revoked and holding no grant."""
        token = world.issue(name="ci")
        url = f"/tokens/{token['token_id']}"
        body = world.client.get(url, headers=world.pat).json()
        assert body["name"] == "ci"
        assert body["revoked"] is False
        assert body["grants"] == {world.tid: {"permissions": ["view"], "scope": "*"}}
        world.client.post(f"{url}/revoke", headers=world.pat)
        response = world.client.get(url, headers=world.pat)
        assert response.json()["revoked"] is True
        assert response.json()["grants"] == {}
        assert token["value"] not in response.text

    def test_a_manager_reads_only_tokens_all_of_whose_troops_it_manages(self, world):
        """A manager of the first troop reads a token attached there only; a
        token also attached to the second troop, or detached: 403."""
        manager = _manager(world, world.tid)
        token = world.issue()
        url = f"/tokens/{token['token_id']}"
        assert world.client.get(url, headers=manager).status_code == 200
        world.auth.attach(
            world.owner, token["token_id"], world.tid2, Grant.parse("view")
        )
        assert world.client.get(url, headers=manager).status_code == 403
        alone = world.auth.issue_token(world.owner, world.tid2, Grant.parse("view"))
        response = world.client.get(f"/tokens/{alone.token_id}", headers=manager)
        assert response.status_code == 403

    def test_last_used_is_shown(self, world):
        """A token verified since is listed with its last use (once the
        library has written it), and null before."""
        token = world.issue(name="ci")
        url = f"/tokens/{token['token_id']}"
        assert world.client.get(url, headers=world.pat).json()["last_used_at"] is None
        world.auth.verify(token["value"], world.tid, Permission.VIEW)
        world.auth.flush_last_used()
        body = world.client.get(url, headers=world.pat).json()
        assert body["last_used_at"] == world.clock.now.isoformat()
        listed = world.client.get(f"/troops/{world.tid}/tokens", headers=world.pat)
        assert [t["last_used_at"] for t in listed.json()["tokens"]] == [
            world.clock.now.isoformat()
        ]

    def test_unknown_and_foreign_tokens_are_404(self, world):
        """An unknown id and another account's token: 404 alike."""
        other = make_account(world.auth)
        theirs = world.auth.issue_token(other.owner, other.tid, Grant.parse("view"))
        for token_id in ("tok_nope", theirs.token_id, other.pat.token_id):
            response = world.client.get(f"/tokens/{token_id}", headers=world.pat)
            assert response.status_code == 404, token_id


@pytest.fixture
def crowded(clock):
    """An account with 7 tokens in its first troop (one a second apart), and a
    checked client of an app that lets the PAT resize the seat pool."""
    with MemoryStore() as store:
        auth = TroopAuth(store, clock=clock)
        setup = make_account(auth, seats=8, troops=2)
        ids = []
        for i in range(7):
            clock.advance(seconds=1)
            ids.append(
                auth.issue_token(
                    setup.owner, setup.tid, Grant.parse("view"), name=f"t{i}"
                ).token_id
            )
        with checked_client(create_app(auth, seats_writable=True)) as client:
            yield auth, setup, ids, client


class TestPages:
    """GET /troops/{troop_id}/tokens?limit=&after=."""

    def test_pages_walk_the_whole_list(self, crowded):
        """Pages of 3 follow `next` to the end: 3, 3, 1, the same tokens in the
        same order as one unpaged listing, and `next` null at the end."""
        _, setup, ids, client = crowded
        url = f"/troops/{setup.tid}/tokens"
        headers = bearer(setup.pat)
        whole = client.get(url, headers=headers).json()
        assert whole["next"] is None
        assert [t["token_id"] for t in whole["tokens"]] == ids
        seen, sizes, after = [], [], None
        while True:
            params = {"limit": "3", **({"after": after} if after else {})}
            page = client.get(url, params=params, headers=headers).json()
            sizes.append(len(page["tokens"]))
            seen += [t["token_id"] for t in page["tokens"]]
            after = page["next"]
            if after is None:
                break
        assert sizes == [3, 3, 1]
        assert seen == ids

    def test_a_full_last_page_says_so(self, crowded):
        """With exactly a page left, `next` is null: no empty page to fetch."""
        _, setup, _, client = crowded
        page = client.get(
            f"/troops/{setup.tid}/tokens",
            params={"limit": "7"},
            headers=bearer(setup.pat),
        ).json()
        assert len(page["tokens"]) == 7
        assert page["next"] is None

    @pytest.mark.parametrize(
        "query",
        [
            "limit=0",
            "limit=-1",
            "limit=abc",
            "limit=1001",
            "limit=1&limit=2",
            "after=",
            "after=tok_nope",
            "page=2",
            "limit=%EF%BC%93",
        ],
    )
    def test_bad_query_is_422(self, crowded, query):
        """A limit out of range or not a number, an unknown cursor, a field
        twice or an unknown field: 422."""
        _, setup, _, client = crowded
        response = client.get(
            f"/troops/{setup.tid}/tokens?{query}", headers=bearer(setup.pat)
        )
        assert response.status_code == 422, response.text


class TestSeats:
    """PUT /accounts/{account_id}/seats."""

    def test_the_pat_resizes_the_pool(self, crowded):
        """The PAT grows the pool, and shrinks it down to the seats in use."""
        auth, setup, _, client = crowded
        url = f"/accounts/{setup.account.id}/seats"
        grown = client.put(url, json={"capacity": 20}, headers=bearer(setup.pat))
        assert grown.json() == {"capacity": 20, "used": 7, "free": 13}
        shrunk = client.put(url, json={"capacity": 7}, headers=bearer(setup.pat))
        assert shrunk.json() == {"capacity": 7, "used": 7, "free": 0}
        assert auth.seats(setup.account.id).capacity == 7

    def test_below_use_is_409_and_changes_nothing(self, crowded):
        """Fewer seats than in use: 409 seats-exhausted, the pool unchanged."""
        auth, setup, _, client = crowded
        before = snapshot(auth, [setup])
        response = client.put(
            f"/accounts/{setup.account.id}/seats",
            json={"capacity": 6},
            headers=bearer(setup.pat),
        )
        assert response.status_code == 409
        assert snapshot(auth, [setup]) == before

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"capacity": -1},
            {"capacity": True},
            {"capacity": 1.5},
            {"capacity": "9"},
            {"capacity": 9, "x": 1},
        ],
    )
    def test_bad_body_is_422(self, crowded, body):
        """No capacity, a negative one, a wrong type or an unknown field: 422."""
        auth, setup, _, client = crowded
        before = snapshot(auth, [setup])
        response = client.put(
            f"/accounts/{setup.account.id}/seats", json=body, headers=bearer(setup.pat)
        )
        assert response.status_code == 422
        assert snapshot(auth, [setup]) == before

    def test_only_the_pat_and_only_when_the_host_allows(self, world, crowded):
        """By default (seats_writable=False) even the PAT gets 403; a manager
        token gets 403; another account's pool is 404."""
        acct = world.setup.account.id
        url = f"/accounts/{acct}/seats"
        refused = world.client.put(url, json={"capacity": 9}, headers=world.pat)
        assert refused.status_code == 403
        auth, setup, _, client = crowded
        manager = auth.issue_token(setup.owner, setup.tid, Grant.parse("manage"))
        own = f"/accounts/{setup.account.id}/seats"
        response = client.put(own, json={"capacity": 9}, headers=bearer(manager))
        assert response.status_code == 403
        response = client.put(url, json={"capacity": 9}, headers=bearer(setup.pat))
        assert response.status_code == 404
        assert world.auth.seats(acct).capacity == 3


class TestExpiring:
    """GET /accounts/{account_id}/expiring?within=."""

    def test_lists_what_expires_within(self, world):
        """1 h and 10 d away: 7d lists the first, 3600 (seconds) lists it too,
        30d lists both soonest first; no expiry is never listed."""
        soon = world.issue(
            expires_at=(world.clock.now + timedelta(hours=1)).isoformat()
        )
        later = world.issue(
            expires_at=(world.clock.now + timedelta(days=10)).isoformat()
        )
        world.issue()
        url = f"/accounts/{world.setup.account.id}/expiring"

        def ids(within: str | None) -> list[str]:
            params = {} if within is None else {"within": within}
            body = world.client.get(url, params=params, headers=world.pat).json()
            return [t["token_id"] for t in body["tokens"]]

        assert ids(None) == ids("7d") == [soon["token_id"]]
        assert ids("3600") == [soon["token_id"]]
        assert ids("59m") == []
        assert ids("30d") == [soon["token_id"], later["token_id"]]

    @pytest.mark.parametrize("within", ["", "7x", "-1", "1.5d", "7 d", "99999999999w"])
    def test_bad_within_is_422(self, world, within):
        """A within that is not seconds or a number with a unit, or past ten
        years: 422."""
        url = f"/accounts/{world.setup.account.id}/expiring"
        response = world.client.get(url, params={"within": within}, headers=world.pat)
        assert response.status_code == 422

    def test_only_the_pat(self, world):
        """A manager token: 403; another account: 404."""
        url = f"/accounts/{world.setup.account.id}/expiring"
        manager = _manager(world, world.tid)
        assert world.client.get(url, headers=manager).status_code == 403
        other = make_account(world.auth)
        response = world.client.get(
            f"/accounts/{other.account.id}/expiring", headers=world.pat
        )
        assert response.status_code == 404


class TestRotateOverlap:
    """POST /tokens/{token_id}/rotate with {"overlap_seconds": N}."""

    def test_the_old_value_works_until_the_overlap_ends(self, world):
        """With an hour's overlap both values work; an hour later, only the new."""
        token = world.issue()
        response = world.client.post(
            f"/tokens/{token['token_id']}/rotate",
            json={"overlap_seconds": 3600},
            headers=world.pat,
        )
        new = response.json()["value"]
        world.auth.verify(token["value"], world.tid, Permission.VIEW)
        world.clock.advance(seconds=3599)
        world.auth.verify(token["value"], world.tid, Permission.VIEW)
        world.clock.advance(seconds=1)
        with pytest.raises(InvalidToken):
            world.auth.authenticate(token["value"])
        world.auth.verify(new, world.tid, Permission.VIEW)

    @pytest.mark.parametrize("overlap", [604801, -1, True, 1.0, "60", None])
    def test_bad_overlap_is_422(self, world, overlap):
        """Past 7 days, negative, or not a whole number: 422, no rotation."""
        token = world.issue()
        before = snapshot(world.auth, [world.setup], [token["value"]])
        response = world.client.post(
            f"/tokens/{token['token_id']}/rotate",
            json={"overlap_seconds": overlap},
            headers=world.pat,
        )
        assert response.status_code == 422
        assert snapshot(world.auth, [world.setup], [token["value"]]) == before


class TestPolicy:
    """PATCH /accounts/{account_id}/policy."""

    def test_the_pat_sets_and_reads_the_policy(self, world):
        """A maximum lifetime applies to tokens issued next; a field left out
        keeps its value; an empty body reads the policy; null clears it."""
        url = f"/accounts/{world.setup.account.id}/policy"
        assert world.client.patch(url, headers=world.pat).json() == {
            "max_token_lifetime_seconds": None,
            "require_expiry": False,
        }
        body = {"max_token_lifetime_seconds": 3600}
        response = world.client.patch(url, json=body, headers=world.pat)
        assert response.json() == {
            "max_token_lifetime_seconds": 3600,
            "require_expiry": False,
        }
        issued = world.issue()
        info = world.auth.token(issued["token_id"])
        assert info.expires_at == world.clock.now + timedelta(hours=1)
        later = (world.clock.now + timedelta(hours=2)).isoformat()
        refused = world.client.post(
            f"/troops/{world.tid}/tokens",
            json={
                "grant": {"permissions": ["view"], "scope": "*"},
                "expires_at": later,
            },
            headers=world.pat,
        )
        assert refused.status_code == 422
        kept = world.client.patch(url, json={"require_expiry": True}, headers=world.pat)
        assert kept.json() == {
            "max_token_lifetime_seconds": 3600,
            "require_expiry": True,
        }
        cleared = world.client.patch(
            url, json={"max_token_lifetime_seconds": None}, headers=world.pat
        )
        assert cleared.json() == {
            "max_token_lifetime_seconds": None,
            "require_expiry": True,
        }

    @pytest.mark.parametrize(
        "body",
        [
            {"max_token_lifetime_seconds": 0},
            {"max_token_lifetime_seconds": -5},
            {"max_token_lifetime_seconds": True},
            {"max_token_lifetime_seconds": "3600"},
            {"max_token_lifetime_seconds": 10**12},
            {"require_expiry": "yes"},
            {"require_expiry": None},
            {"lifetime": 5},
        ],
    )
    def test_bad_body_is_422_and_changes_nothing(self, world, body):
        """A lifetime that is not a positive whole number (or null), a flag that
        is not a boolean, an unknown field: 422, the policy unchanged."""
        url = f"/accounts/{world.setup.account.id}/policy"
        response = world.client.patch(url, json=body, headers=world.pat)
        assert response.status_code == 422
        assert world.client.patch(url, headers=world.pat).json() == {
            "max_token_lifetime_seconds": None,
            "require_expiry": False,
        }

    def test_only_the_pat(self, world):
        """A manager token: 403; another account's policy: 404."""
        url = f"/accounts/{world.setup.account.id}/policy"
        body = {"require_expiry": True}
        manager = _manager(world, world.tid)
        assert world.client.patch(url, json=body, headers=manager).status_code == 403
        other = make_account(world.auth)
        response = world.client.patch(
            f"/accounts/{other.account.id}/policy", json=body, headers=world.pat
        )
        assert response.status_code == 404
        world.issue()  # no expiry required: the manager's change did not land
