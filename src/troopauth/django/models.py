"""troopauth's records as Django models (app label ``troopauth``).

One model per record of :mod:`troopauth.store`, mapped the way the built-in
SQL stores map them:

* :class:`Token` rows are unique by ``digest`` (the verify path's one indexed
  read) and by ``prev_digest`` (a rotation overlap's kept value, which the
  lookup also finds); a partial index on ``(account, expires_at)`` of the
  seated tokens is the expiry index;
* :class:`Attachment` rows carry their token's age in microseconds, indexed by
  ``(troop_id, created_us, token)``: a troop's tokens a page at a time;
* :class:`MemberTroop` rows index members by troop;
* :class:`AuditEntry` rows hold each hash-chained event as JSON, by log and seq.

The models are the store's: write through :class:`~troopauth.TroopAuth`, never
through the ORM (the rules, the seat counter and the audit chain live in the
core). The admin shows them read-only.
"""

from __future__ import annotations

from typing import Any

from django.db import models

#: Ids are at most 256 characters (``troopauth.core``).
_ID = 256


class Account(models.Model):
    """An account: its seat pool and counter, PAT, policy and account-log head."""

    id = models.CharField(primary_key=True, max_length=_ID)
    seats = models.IntegerField()
    audit_log = models.BooleanField()
    created_at = models.DateTimeField()
    seats_used = models.IntegerField(default=0)
    personal_token_id = models.CharField(max_length=_ID, null=True, blank=True)
    audit_seq = models.BigIntegerField(default=0)
    audit_head = models.CharField(max_length=64)
    #: The policy's maximum token lifetime in whole microseconds (exact).
    max_lifetime_us = models.BigIntegerField(null=True, blank=True)
    require_expiry = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.id


class Troop(models.Model):
    """A troop of an account, with the head of its audit log."""

    id = models.CharField(primary_key=True, max_length=_ID)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    name = models.TextField()
    created_at = models.DateTimeField()
    audit_seq = models.BigIntegerField(default=0)
    audit_head = models.CharField(max_length=64)

    class Meta:
        indexes = (
            models.Index(
                fields=["account", "created_at", "id"],
                name="troopauth_troop_by_account",
            ),
        )

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class Token(models.Model):
    """A token: its SHA-256 digest, never its value."""

    id = models.CharField(primary_key=True, max_length=_ID)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16)
    digest = models.BinaryField(unique=True)
    hint = models.CharField(max_length=64)
    name = models.TextField(blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    #: troop id -> [permission bits, canonical scope text].
    grants = models.JSONField()
    revoked = models.BooleanField(default=False)
    seated = models.BooleanField(default=False)
    generation = models.IntegerField(default=0)
    prev_digest = models.BinaryField(unique=True, null=True, blank=True)
    prev_expires_at = models.DateTimeField(null=True, blank=True)
    #: When the token was last used, to within the facade's interval: written
    #: by ``DjangoStore.record_last_used`` only (never by ``put_token``).
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = (("revoke_token", "Can revoke tokens (admin action)"),)
        indexes = (
            models.Index(
                fields=["account", "expires_at"],
                condition=models.Q(seated=True, expires_at__isnull=False),
                name="troopauth_token_expiry",
            ),
        )

    def __str__(self) -> str:
        return f"{self.name or self.id} ({self.hint})"


class Attachment(models.Model):
    """A token attached to a troop, with the token's age for the listing index."""

    troop_id = models.CharField(max_length=_ID)
    token = models.ForeignKey(Token, on_delete=models.CASCADE, related_name="+")
    #: The token's ``created_at`` in whole microseconds since the epoch.
    created_us = models.BigIntegerField()

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["troop_id", "token"], name="troopauth_attachment_unique"
            ),
        )
        indexes = (
            models.Index(
                fields=["troop_id", "created_us", "token"],
                name="troopauth_attachment_age",
            ),
        )


class Member(models.Model):
    """A member (a person of the host application) and their grants by troop."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    member_id = models.CharField(max_length=_ID)
    #: troop id -> [permission bits, canonical scope text].
    grants = models.JSONField()

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["account", "member_id"], name="troopauth_member_unique"
            ),
        )

    def __str__(self) -> str:
        return self.member_id


class MemberTroop(models.Model):
    """The member index by troop: one row per (troop, member)."""

    troop_id = models.CharField(max_length=_ID)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["troop_id", "member"], name="troopauth_member_troop_unique"
            ),
        )


class AuditEntry(models.Model):
    """One event of a hash-chained audit log (a troop's, or ``account:<id>``)."""

    log = models.CharField(max_length=_ID + 8)
    seq = models.BigIntegerField()
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    #: The event as troopauth's converter unstructures it (never a secret).
    event = models.JSONField()

    class Meta:
        verbose_name_plural = "audit entries"
        constraints = (
            models.UniqueConstraint(
                fields=["log", "seq"], name="troopauth_audit_unique"
            ),
        )

    def __str__(self) -> str:
        return f"{self.log} #{self.seq}"

    def field(self, name: str) -> Any:
        """One field of the stored event (for the admin's columns)."""
        return self.event.get(name) if isinstance(self.event, dict) else None
