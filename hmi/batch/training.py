"""The training gate (21 CFR 11.10(i)): who may execute which recipe.

Training records are written by the auth package (``user_training``, append-only; a later row
for the same user and recipe supersedes the earlier one, e.g. ``withdrawn``). A record without a
recipe version covers every version of the recipe; one with a version covers only that version.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from hmi.auth.tables import user_training


def is_trained(conn: Connection, user_id: str, recipe_id: str, version: int) -> bool:
    """Whether the latest applicable training record says ``trained``."""
    rows = conn.execute(
        select(user_training.c.recipe_version, user_training.c.status)
        .where(user_training.c.user_id == user_id, user_training.c.recipe_id == recipe_id)
        .order_by(user_training.c.id.desc())
    ).all()
    for recipe_version, status in rows:
        if recipe_version is None or str(recipe_version) == str(version):
            return bool(status == "trained")
    return False
