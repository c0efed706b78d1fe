"""A small media-request service on Django and PostgreSQL, built with ``seerrperf.django``.

From ``examples/``: ``python -m django_app migrate`` creates the table, then
``gunicorn django_app.wsgi`` (WSGI) or ``uvicorn django_app.asgi:application``
(ASGI) serves it; the settings come from the environment
(:mod:`django_app.settings`). See ``docs/django.md``.
"""
