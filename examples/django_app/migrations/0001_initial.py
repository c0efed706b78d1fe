"""The media_request table (``python -m django_app migrate``); made by makemigrations."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: ClassVar[list[Any]] = []

    operations: ClassVar[list[Any]] = [
        migrations.CreateModel(
            name="MediaRequest",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("media_type", models.TextField(choices=[("movie", "movie"), ("tv", "tv")])),
                ("tmdb_id", models.IntegerField()),
                ("title", models.TextField()),
                (
                    "status",
                    models.TextField(
                        choices=[
                            ("pending", "pending"),
                            ("approved", "approved"),
                            ("declined", "declined"),
                            ("available", "available"),
                        ],
                        default="pending",
                    ),
                ),
                ("requested_by", models.BigIntegerField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "db_table": "media_request",
                "indexes": [
                    models.Index(fields=["requested_by", "-created_at", "-id"], name="by_user")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("status__in", ("pending", "approved"))),
                        fields=("media_type", "tmdb_id"),
                        name="media_request_one_active",
                    )
                ],
            },
        ),
    ]
