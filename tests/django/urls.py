"""The test project's URLs: DRF views and plain Django views under troopauth."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from troopauth import Permission, Principal
from troopauth.django import get_auth
from troopauth.django.decorators import require_token
from troopauth.django.rest_framework import (
    HasTroopPermission,
    TroopTokenAuthentication,
    TroopUser,
)


class TokenView(APIView):
    """The base of the DRF views below: troopauth's classes, and an answer
    naming who came in."""

    authentication_classes = (TroopTokenAuthentication,)
    permission_classes = (HasTroopPermission,)

    def answer(self, request: Request) -> Response:
        """Who the request is, as DRF sees it."""
        return Response(
            {
                "principal": request.auth.describe(),
                "user": str(request.user),
                "authenticated": request.user.is_authenticated,
            }
        )


class KeyView(TokenView):
    """EDIT on one key of the troop in the URL."""

    troopauth_permission = Permission.EDIT
    troopauth_troop_kwarg = "troop"
    troopauth_key_kwarg = "key"

    def get(self, request: Request, troop: str, key: str) -> Response:
        """200 once EDIT on the key is granted."""
        return self.answer(request)


class TroopView(TokenView):
    """Per method: VIEW to read the troop, MANAGE to delete; POST not allowed
    to any token (left out of the mapping)."""

    troopauth_permission: ClassVar[Mapping[str, Permission]] = {
        "GET": Permission.VIEW,
        "DELETE": Permission.MANAGE,
    }

    def get(self, request: Request, troop: str) -> Response:
        """200 with VIEW."""
        return self.answer(request)

    def delete(self, request: Request, troop: str) -> Response:
        """200 with MANAGE."""
        return self.answer(request)

    def post(self, request: Request, troop: str) -> Response:
        """Never reached: no permission allows POST."""
        return self.answer(request)


@require_token(Permission.EDIT, troop_kwarg="troop", key_kwarg="key")
def plain_key(request: HttpRequest, troop: str, key: str) -> JsonResponse:
    """A plain Django view: EDIT on the key."""
    principal: Any = request.troopauth_principal  # type: ignore[attr-defined]
    return JsonResponse({"principal": principal.describe(), "key": key})


@require_token(Permission.EDIT, key_kwarg="key")
async def async_key(request: HttpRequest, troop: str, key: str) -> JsonResponse:
    """An async Django view: EDIT on the key."""
    principal: Any = request.troopauth_principal  # type: ignore[attr-defined]
    return JsonResponse({"principal": principal.describe(), "key": key})


class MemberAuthentication(BaseAuthentication):
    """The host's own authentication: ``X-Member: <account>/<member>`` makes
    the member's principal (a stand-in for a session login)."""

    def authenticate(self, request: Request) -> tuple[Any, Principal] | None:
        """The member's principal, or None without the header."""
        header = request.META.get("HTTP_X_MEMBER")
        if not header:
            return None
        account_id, _, member_id = header.partition("/")
        principal = get_auth().member(account_id, member_id)
        return TroopUser(principal), principal


class MemberKeyView(KeyView):
    """EDIT on the key, for members authenticated by the host."""

    authentication_classes = (MemberAuthentication,)


@require_token(Permission.VIEW)
def plain_troop(request: HttpRequest, troop: str) -> JsonResponse:
    """A plain Django view: VIEW on the troop (a troop-level action)."""
    principal: Any = request.troopauth_principal  # type: ignore[attr-defined]
    return JsonResponse({"principal": principal.describe()})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("drf/<str:troop>/keys/<str:key>/", KeyView.as_view()),
    path("drf/<str:troop>/", TroopView.as_view()),
    path("plain/<str:troop>/keys/<str:key>/", plain_key),
    path("plain/<str:troop>/", plain_troop),
    path("async/<str:troop>/keys/<str:key>/", async_key),
    path("member/<str:troop>/keys/<str:key>/", MemberKeyView.as_view()),
]
