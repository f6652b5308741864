"""A read-only admin of troopauth's records, with one action: revoke.

Every page is read-only (no add, change or delete: the rules, the seat
counter and the audit chain live in troopauth's core, not in forms), and no
page shows a digest. The "Revoke selected tokens" action goes through
:meth:`troopauth.TroopAuth.revoke`, so each revoke is checked, frees its seat
and is audited in every troop the token was attached to, in one transaction.

Who acts: the staff user acts for the account owner, as the host application
does for account-level calls. troopauth's rules want an actor, so the action
acts as the account's **personal access token** (the owner's credential, read
from the store as it is now); the audit events name that PAT, and Django's
admin history (``LogEntry``) names the staff user. An account without a live
PAT cannot be acted for: issue one first. The action needs the
``troopauth.revoke_token`` permission (superusers have it). Before revoking
anything it checks every selected token's account; if one cannot be acted
for, nothing is revoked.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ..errors import TroopAuthError
from ..models import Kind, Principal
from ..permission import Permission
from . import models as m
from .conf import get_auth


class _ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    """Viewing only: no add, change or delete, for anyone."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Records are made through TroopAuth, never here."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Records change through TroopAuth, never here."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nothing troopauth keeps is deleted by hand."""
        return False


def _grants(data: Any) -> str:
    """``troop: permissions scope`` per troop, from the stored JSON."""
    if not isinstance(data, dict):
        return ""
    parts = []
    for troop_id, (bits, scope) in sorted(data.items()):
        names = "|".join(p.name or "" for p in Permission(bits)) or "none"
        parts.append(f"{troop_id}: {names.lower()} {scope}")
    return "; ".join(parts)


def _owner(account_id: str) -> Principal | None:
    """The account's personal token as an actor, as it is now (or None)."""
    auth = get_auth()
    with auth.store.transaction(account_id, write=False) as tx:
        account = tx.get_account()
        if account is None or account.personal_token_id is None:
            return None
        pat = tx.get_token(account.personal_token_id)
    if pat is None or pat.revoked or pat.kind is not Kind.PERSONAL:
        return None
    return pat.principal


@admin.register(m.Token)
class TokenAdmin(_ReadOnly):
    """Tokens: name, hint, grants, expiry, last use, state; never a digest."""

    list_display = (
        "id",
        "name",
        "hint",
        "kind",
        "account",
        "grants_text",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked",
        "seated",
    )
    list_filter = ("kind", "revoked", "seated")
    search_fields = ("=id", "name", "=account__id")
    fields = (
        "id",
        "account",
        "kind",
        "name",
        "hint",
        "grants_text",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked",
        "seated",
        "generation",
        "prev_expires_at",
    )
    readonly_fields = fields
    actions = ("revoke",)

    @admin.display(description="grants")
    def grants_text(self, obj: m.Token) -> str:
        """The grants by troop, as text."""
        return _grants(obj.grants)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        """The ``troopauth.revoke_token`` permission."""
        user: Any = request.user
        return bool(user.has_perm("troopauth.revoke_token"))

    @admin.action(description="Revoke selected tokens", permissions=("revoke",))
    def revoke(self, request: HttpRequest, queryset: QuerySet[m.Token]) -> None:
        """Revoke each selected token through TroopAuth.revoke, acting as its
        account's personal token; nothing if one account cannot be acted for."""
        chosen = list(queryset.values_list("id", "account_id", "kind"))
        owners: dict[str, Principal] = {}
        for token_id, account_id, kind in chosen:
            if kind == Kind.PERSONAL.value:
                self.message_user(
                    request,
                    f"{token_id} is a personal access token: replace it by "
                    "issuing a new one. Nothing was revoked.",
                    messages.ERROR,
                )
                return
            if account_id not in owners:
                owner = _owner(account_id)
                if owner is None:
                    self.message_user(
                        request,
                        f"account {account_id} has no live personal access "
                        "token to act as: issue one first. Nothing was revoked.",
                        messages.ERROR,
                    )
                    return
                owners[account_id] = owner
        auth = get_auth()
        done = 0
        for token_id, account_id, _ in chosen:
            try:
                auth.revoke(owners[account_id], token_id)
            except TroopAuthError as exc:
                self.message_user(
                    request,
                    f"{token_id} was not revoked ({type(exc).__name__}); "
                    f"{done} token(s) before it were.",
                    messages.ERROR,
                )
                return
            obj = m.Token.objects.using(queryset.db).get(pk=token_id)
            self.log_change(request, obj, "Revoked through troopauth")
            done += 1
        self.message_user(request, f"Revoked {done} token(s).", messages.SUCCESS)


@admin.register(m.Account)
class AccountAdmin(_ReadOnly):
    """Accounts: seats (capacity, used, free), the audit log, the policy."""

    list_display = (
        "id",
        "seats",
        "seats_used",
        "seats_free",
        "audit_log",
        "require_expiry",
        "created_at",
    )
    search_fields = ("=id",)

    @admin.display(description="free seats")
    def seats_free(self, obj: m.Account) -> int:
        """Seats left for another troop token."""
        return int(obj.seats) - int(obj.seats_used)


@admin.register(m.Troop)
class TroopAdmin(_ReadOnly):
    """Troops of every account."""

    list_display = ("id", "name", "account", "created_at", "audit_seq")
    search_fields = ("=id", "name", "=account__id")


@admin.register(m.Member)
class MemberAdmin(_ReadOnly):
    """Members and their grants by troop."""

    list_display = ("member_id", "account", "grants_text")
    search_fields = ("member_id", "=account__id")

    @admin.display(description="grants")
    def grants_text(self, obj: m.Member) -> str:
        """The grants by troop, as text."""
        return _grants(obj.grants)


@admin.register(m.AuditEntry)
class AuditEntryAdmin(_ReadOnly):
    """The audit logs (each troop's, and each account's), event by event."""

    list_display = ("log", "seq", "at", "action", "actor", "token_id", "account")
    list_filter = ("log",)
    ordering = ("log", "seq")

    @admin.display(description="at")
    def at(self, obj: m.AuditEntry) -> Any:
        """When."""
        return obj.field("at")

    @admin.display(description="action")
    def action(self, obj: m.AuditEntry) -> Any:
        """What."""
        return obj.field("action")

    @admin.display(description="actor")
    def actor(self, obj: m.AuditEntry) -> Any:
        """Who."""
        return obj.field("actor")

    @admin.display(description="token")
    def token_id(self, obj: m.AuditEntry) -> Any:
        """Which token."""
        return obj.field("token_id")
