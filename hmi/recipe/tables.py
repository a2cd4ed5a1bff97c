"""SQLAlchemy Core description of the recipe table (created by migration m0003_recipes)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, Table, Text

metadata = MetaData()

recipe_version = Table(
    "recipe_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recipe_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("product", Text, nullable=False),
    Column("format", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("content_sha256", Text, nullable=False),
    Column("canonical_json", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("source_path", Text, nullable=False),
    Column("imported_by", Text, nullable=False),
    Column("imported_at", Text, nullable=False),
    Column("approved_by", Text),
    Column("approved_at", Text),
    Column("approval_ref", Text),
    Column("superseded_at", Text),
    Column("superseded_by_version", Integer),
    Column("retired_by", Text),
    Column("retired_at", Text),
    Column("retire_reason", Text),
)
