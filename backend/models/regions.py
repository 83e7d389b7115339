"""Administrative divisions (GB/T 2260): province, city, county."""

from tortoise import fields
from tortoise.models import Model

LEVELS = ("province", "city", "county")


class Region(Model):
    code = fields.CharField(max_length=6, primary_key=True)
    name = fields.CharField(max_length=64)
    #: province, city or county
    level = fields.CharField(max_length=8)
    parent: fields.ForeignKeyNullableRelation["Region"] = fields.ForeignKeyField(
        "models.Region", related_name="children", null=True, on_delete=fields.RESTRICT
    )
    children: fields.ReverseRelation["Region"]

    class Meta:
        table = "region"

    def __str__(self) -> str:
        return f"{self.name}({self.code})"

    @property
    def scope_prefix(self) -> str:
        """The code prefix shared by this region and everything under it."""
        return scope_prefix(self.code, self.level)


def scope_prefix(code: str, level: str) -> str:
    if level == "province":
        return code[:2]
    if level == "city":
        return code[:4]
    return code
