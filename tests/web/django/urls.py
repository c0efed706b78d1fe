"""URLs of the in-process test project (``conftest.django_project``)."""

from __future__ import annotations

import psycopg
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from seerrperf import CacheControl, TmdbNotFound
from seerrperf import django as sp


def movie(request: HttpRequest, movie_id: int) -> HttpResponse:
    try:
        found = sp.tmdb().get_movie(movie_id)
    except TmdbNotFound:
        return sp.json_response(
            {"detail": "no such movie"}, cache_control=CacheControl(), status=404
        )
    body = {"title": found["title"], "titre": "\u00e9t\u00e9"}
    return sp.json_response(body, request=request, cache_control=CacheControl(max_age=60))


def fail(request: HttpRequest, kind: str) -> HttpResponse:
    """Raise what an outage (or a bug) raises, from inside a transaction."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if kind == "database":
            raise psycopg.OperationalError("connection lost")
        if kind == "django-database":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        raise RuntimeError("a bug, not an outage")


def cached_error(request: HttpRequest) -> HttpResponse:
    return HttpResponse("nope", status=409, headers={"Cache-Control": "max-age=600", "ETag": '"x"'})


urlpatterns = [
    path("health/", include("seerrperf.django.urls")),
    path("movie/<int:movie_id>", movie),
    path("fail/<str:kind>", fail),
    path("conflict", cached_error),
]
