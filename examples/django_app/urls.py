"""Routes; the health views come from ``seerrperf.django.urls``."""

from __future__ import annotations

from django.urls import include, path, re_path

from . import views

urlpatterns = [
    path("api/v1/request", views.new_request),
    re_path(r"^api/v1/(?P<media_type>movie|tv)/(?P<tmdb_id>[0-9]{1,10})$", views.media),
    re_path(r"^api/v1/async/movie/(?P<tmdb_id>[0-9]{1,10})$", views.async_movie),
    path("api/profile/requests", views.profile_requests),
    path("imageproxy/<str:size>/<path:file>", views.image),
    path("api/health/", include("seerrperf.django.urls")),  # live, ready
    path("metrics", views.metrics),
    path("api/debug/stats", views.debug_stats),
]
