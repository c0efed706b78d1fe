"""The one table: media requests, at most one active per title."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models

STATUSES = ("pending", "approved", "declined", "available")
ACTIVE = ("pending", "approved")


class MediaRequest(models.Model):
    media_type = models.TextField(choices=[("movie", "movie"), ("tv", "tv")])
    tmdb_id = models.IntegerField()
    title = models.TextField()
    status = models.TextField(default="pending", choices=[(s, s) for s in STATUSES])
    requested_by = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "media_request"
        indexes: ClassVar[list[Any]] = [
            models.Index(fields=["requested_by", "-created_at", "-id"], name="by_user")
        ]
        constraints: ClassVar[list[Any]] = [
            # The last line of defence behind the lock: one active request per title.
            models.UniqueConstraint(
                fields=["media_type", "tmdb_id"],
                condition=models.Q(status__in=ACTIVE),
                name="media_request_one_active",
            )
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mediaType": self.media_type,
            "mediaId": self.tmdb_id,
            "title": self.title,
            "status": self.status,
            "requestedBy": self.requested_by,
            "createdAt": self.created_at.isoformat().replace("+00:00", "Z"),
        }
