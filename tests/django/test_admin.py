"""The read-only admin and its revoke action, through Django's test client."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs
import pytest
from django.contrib.admin.utils import quote as admin_quote
from django.contrib.auth.models import Permission as DjangoPermission
from django.contrib.auth.models import User
from django.test import Client

from troopauth import Grant, InvalidToken, Permission, Scope, TroopAuth
from troopauth.django import get_auth
from troopauth.django.models import Account, Token
from troopauth.models import AuditAction

from .conftest import empty, migrated

EDIT_DEPLOY = Grant(Permission.EDIT, Scope.parse("key:deploy"))
CHANGELIST = "/admin/troopauth/token/"


@attrs.frozen
class Shop:
    """An account with two troops, its PAT, and a token attached to both."""

    auth: TroopAuth
    account_id: str
    troops: tuple[str, str]
    pat: str
    token_id: str
    value: str


@pytest.fixture
def shop() -> Shop:
    """Fresh tables (troopauth's and the users'), one account's tokens."""
    empty(migrated("default"))
    User.objects.all().delete()
    auth = get_auth()
    acct = auth.create_account(seats=2, audit_log=True)
    first = auth.create_troop(acct.id, "first").id
    second = auth.create_troop(acct.id, "second").id
    pat = auth.issue_personal_token(acct.id).value
    owner = auth.authenticate(pat)
    issued = auth.issue_token(owner, first, EDIT_DEPLOY, name="ci")
    auth.attach(owner, issued.token_id, second, EDIT_DEPLOY)
    return Shop(auth, acct.id, (first, second), pat, issued.token_id, issued.value)


def staff(*, superuser: bool = False, perms: tuple[str, ...] = ()) -> Client:
    """A client logged in as a staff user with *perms* (or a superuser)."""
    user = User.objects.create_user("staff", is_staff=True, is_superuser=superuser)
    for codename in perms:
        user.user_permissions.add(DjangoPermission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def revoke(client: Client, *token_ids: str) -> str:
    """Post the revoke action for *token_ids*; the page it lands on."""
    response = client.post(
        CHANGELIST,
        {"action": "revoke", "_selected_action": list(token_ids)},
        follow=True,
    )
    assert response.status_code == 200
    return response.content.decode()


class TestReadOnlyAdmin:
    """Every troopauth page shows, and none edits or shows a secret."""

    @pytest.mark.parametrize(
        "page", ["token", "account", "troop", "member", "auditentry"]
    )
    def test_changelists_show(self, shop: Shop, page: str) -> None:
        """Each changelist answers 200 to a superuser, without the value or
        any digest."""
        response = staff(superuser=True).get(f"/admin/troopauth/{page}/")
        assert response.status_code == 200
        text = response.content.decode()
        assert shop.value not in text
        token = Token.objects.get(pk=shop.token_id)
        assert bytes(token.digest).hex() not in text

    def test_detail_page_is_read_only(self, shop: Shop) -> None:
        """A token's page has no form to save, and no digest."""
        client = staff(superuser=True)
        # The admin escapes '_' in keys, and reads '_2F' and its like back as
        # '/' and so on (an id like tok_2F... would name another token):
        # build the URL as the admin itself does.
        response = client.get(f"{CHANGELIST}{admin_quote(shop.token_id)}/change/")
        assert response.status_code == 200
        text = response.content.decode()
        assert 'name="_save"' not in text
        assert bytes(Token.objects.get(pk=shop.token_id).digest).hex() not in text
        assert client.get(f"{CHANGELIST}add/").status_code == 403

    def test_seats_are_shown(self, shop: Shop) -> None:
        """The account list shows capacity, used and free seats."""
        response = staff(superuser=True).get("/admin/troopauth/account/")
        row = Account.objects.get(pk=shop.account_id)
        assert (row.seats, row.seats_used) == (2, 1)
        text = response.content.decode()
        assert '<td class="field-seats">2</td>' in text
        assert '<td class="field-seats_used">1</td>' in text
        assert '<td class="field-seats_free">1</td>' in text


class TestRevokeAction:
    """The revoke action goes through TroopAuth.revoke, audited."""

    def test_revoke_goes_through_the_rules(self, shop: Shop) -> None:
        """The token stops working, its seat is freed, and each troop it was
        attached to logs the revoke, with the PAT as actor."""
        page = revoke(staff(superuser=True), shop.token_id)
        assert "Revoked 1 token(s)." in page
        with pytest.raises(InvalidToken):
            shop.auth.authenticate(shop.value)
        assert shop.auth.seats(shop.account_id).used == 0
        pat_id = shop.auth.authenticate(shop.pat).token_id
        for troop in shop.troops:
            last = shop.auth.audit_log(troop)[-1]
            assert (last.action, last.token_id) == (AuditAction.REVOKE, shop.token_id)
            assert last.actor == f"personal:{pat_id}"
            assert shop.auth.check_audit_log(troop) is None

    def test_needs_the_revoke_permission(self, shop: Shop) -> None:
        """A staff user who may view tokens but not revoke them: the action
        is not offered and a forged post revokes nothing."""
        client = staff(perms=("view_token",))
        listing = client.get(CHANGELIST).content.decode()
        assert "Revoke selected tokens" not in listing
        client.post(
            CHANGELIST, {"action": "revoke", "_selected_action": [shop.token_id]}
        )
        shop.auth.authenticate(shop.value)
        allowed = staff_with_revoke()
        assert "Revoke selected tokens" in allowed.get(CHANGELIST).content.decode()

    def test_no_live_pat_revokes_nothing(self, shop: Shop) -> None:
        """An account whose PAT was reported leaked cannot be acted for: an
        error, and no token of the selection is revoked."""
        other = shop.auth.create_account(seats=1)
        troop = shop.auth.create_troop(other.id, "t").id
        other_pat = shop.auth.issue_personal_token(other.id).value
        far = shop.auth.issue_token(
            shop.auth.authenticate(other_pat), troop, EDIT_DEPLOY
        )
        assert shop.auth.report_leak(other_pat)
        page = revoke(staff(superuser=True), shop.token_id, far.token_id)
        assert "Nothing was revoked." in page
        shop.auth.authenticate(shop.value)
        shop.auth.authenticate(far.value)

    def test_a_pat_is_not_revoked_here(self, shop: Shop) -> None:
        """Selecting the PAT is refused (it is replaced, not revoked)."""
        pat_id = shop.auth.authenticate(shop.pat).token_id
        assert pat_id is not None
        page = revoke(staff(superuser=True), pat_id, shop.token_id)
        assert "Nothing was revoked." in page
        shop.auth.authenticate(shop.pat)
        shop.auth.authenticate(shop.value)


def staff_with_revoke() -> Client:
    """Another staff user, holding view_token and revoke_token."""
    user = User.objects.create_user("revoker", is_staff=True)
    for codename in ("view_token", "revoke_token"):
        user.user_permissions.add(DjangoPermission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


class TestLastUsedColumn:
    """The token list shows when each token was last used."""

    def test_token_list_shows_last_used(self, shop: Shop) -> None:
        """The changelist has a "last used at" column; a stamped token shows
        its date there."""
        client = staff(superuser=True)
        assert "Last used at" in client.get(CHANGELIST).content.decode()
        when = datetime(2026, 3, 14, 15, 9, tzinfo=UTC)
        get_auth().store.record_last_used({shop.token_id: when})  # type: ignore[attr-defined]
        text = client.get(CHANGELIST).content.decode()
        assert "March 14, 2026, 3:09 p.m." in text
