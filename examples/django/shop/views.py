"""The example shop's one API view."""

from rest_framework.response import Response
from rest_framework.views import APIView

from troopauth import Permission


class Deploy(APIView):
    troopauth_permission = Permission.EDIT  # EDIT on the key, in the troop
    troopauth_troop_kwarg = "troop"
    troopauth_key_kwarg = "key"

    def post(self, request, troop, key):
        return Response({"deployed": key, "by": request.auth.describe()})
