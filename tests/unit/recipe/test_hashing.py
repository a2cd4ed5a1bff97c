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


#: The identity of every shipped recipe version, as approved. A recipe's hash must never change
#: under a new release of the software (a stored, approved version would then be refused), and
#: a shipped file must never change without a new version number.
SHIPPED_HASHES = {
    ("CLV-BLENDER-01", 2): "ccb997d5f191d83920ceb2d876229ec2518c676ae219fcb26c48b716224c863a",
    ("IBU200-PB", 2): "03a89ea79d0e12abdecffd0e8b648515ed3d3b0eed3c6a1df17643f79e2b2851",
    ("PARA500-FB", 4): "700d542a00766c05d2c38eb5f76cd73b6e85a3751f1979ddc6a55391f0ea2896",
}


def test_shipped_recipes_keep_their_approved_hashes() -> None:
    found = {}
    for path in sorted(SHIPPED.glob("*.toml")):
        loaded = load_recipe_text(path.read_text(encoding="utf-8"), str(path))
        found[(loaded.recipe.id, loaded.recipe.version)] = loaded.sha256
    assert found == SHIPPED_HASHES


def test_a_version_approved_before_a_new_optional_key_keeps_its_hash() -> None:
    """PARA500-FB v3, approved before check steps could name a PLC signal: its stored text
    still gives the hash it was signed with."""
    v3 = TEXT.replace("version = 4", "version = 3").replace(
        'plc_signal = { tag = "lid_closed", value = true }\n', ""
    )
    loaded = load_recipe_text(v3, "PARA500-FB v3")
    assert "plc_signal" not in loaded.canonical_json
    assert loaded.sha256 == "6045b06320ab09ab70e090b20161b837b9499c02b33030037a7795ece0dd328d"
