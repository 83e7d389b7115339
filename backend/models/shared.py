"""The database-backed shared store, used when no Redis is configured."""

from tortoise import fields
from tortoise.models import Model


class SharedValue(Model):
    key = fields.CharField(max_length=191, primary_key=True)
    value = fields.TextField()
    expires_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "shared_value"


class RateBucket(Model):
    id = fields.BigIntField(primary_key=True)
    key = fields.CharField(max_length=191)
    #: start of the fixed window this count belongs to (epoch seconds)
    window_start = fields.BigIntField()
    count = fields.IntField(default=0)

    class Meta:
        table = "rate_bucket"
        unique_together = (("key", "window_start"),)
