"""The example shop's URLs."""

from django.urls import path

from shop.views import Deploy

urlpatterns = [path("troops/<troop>/keys/<key>/deploy", Deploy.as_view())]
