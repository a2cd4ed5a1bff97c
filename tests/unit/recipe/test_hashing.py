"""What the recipe hash covers: meaning, not comments or layout (the exact text is kept too)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hmi.audit import canonical
from hmi.recipe.loader import load_recipe_text

SHIPPED = Path(__file__).resolve().parents[3] / "recipes"
TEXT = (SHIPPED / "paracetamol-final-blend.toml").read_text(encoding="utf-8")


def test_hash_is_sha256_of_canonical_json() -> None:
    loaded = load_recipe_text(TEXT, "a.toml")
    assert loaded.sha256 == hashlib.sha256(loaded.canonical_json.encode("utf-8")).hexdigest()
    assert loaded.canonical_json == canonical.dumps(canonical.loads(loaded.canonical_json))
    assert loaded.content_sha256 == hashlib.sha256(TEXT.encode("utf-8")).hexdigest()


def test_comments_and_layout_keep_the_hash_but_not_the_text_hash() -> None:
    original = load_recipe_text(TEXT, "a.toml")
    edited = TEXT.replace("# Master recipe:", "#   Master   recipe (edited comment):").replace(
        'unit = "rpm"\n', 'unit   =   "rpm"      # spaced out\n'
    )
    assert edited != TEXT
    reformatted = load_recipe_text(edited, "b.toml")
    assert reformatted.sha256 == original.sha256
    assert reformatted.content_sha256 != original.content_sha256


def test_any_semantic_change_changes_the_hash() -> None:
    original = load_recipe_text(TEXT, "a.toml").sha256
    for old, new in [
        ("setpoint = 12", "setpoint = 13"),
        ("tolerance_pct = 0.5", "tolerance_pct = 0.4"),
        ('title = "Blend"', 'title = "Blend the batch"'),
        ("180.0", "180.00"),  # written precision is part of the record
    ]:
        assert load_recipe_text(TEXT.replace(old, new, 1), "b.toml").sha256 != original, old


def test_unit_aliases_are_the_same_recipe() -> None:
    ascii_text = TEXT.replace('unit = "°C"', 'unit = "degC"')
    assert ascii_text != TEXT
    assert load_recipe_text(ascii_text, "b.toml").sha256 == load_recipe_text(TEXT, "a.toml").sha256
