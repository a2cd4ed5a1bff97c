"""Master recipes: the file format, its validation, and the controlled lifecycle in the database.

- :mod:`hmi.recipe.model`: the validated :class:`Recipe` a batch engine consumes (frozen,
  Decimal numbers, ordered steps discriminated on ``kind``).
- :mod:`hmi.recipe.loader`: TOML file -> :class:`Recipe`, or :class:`RecipeInvalid` naming every
  problem (file, step or parameter, field, what was expected).
- :mod:`hmi.recipe.service`: :class:`RecipeService` (import as draft, approve with a QA
  e-signature, supersede, retire, list, show, diff, compare a file with the stored version).
- :mod:`hmi.recipe.tags` and :mod:`hmi.recipe.units`: the logical PLC tags and units a recipe
  may name.

The file format is documented in ``docs/recipe-format.md``. No Textual here.
"""

from hmi.recipe.errors import (
    Problem,
    RecipeError,
    RecipeImportRefused,
    RecipeIntegrityError,
    RecipeInvalid,
    RecipeNotFound,
    RecipeStateError,
)
from hmi.recipe.loader import LoadedRecipe, load_recipe_file, load_recipe_text, parse_recipe
from hmi.recipe.model import (
    FORMAT_VERSION,
    ChargeStep,
    CheckStep,
    DischargeStep,
    Parameter,
    Recipe,
    RunStep,
    SampleStep,
    SetParametersStep,
    SignatureStep,
    Step,
    WaitStep,
)
from hmi.recipe.tags import PLC_TAGS, TagSpec
from hmi.recipe.units import UNITS, convert

__all__ = [
    "FORMAT_VERSION",
    "PLC_TAGS",
    "UNITS",
    "ChargeStep",
    "CheckStep",
    "DischargeStep",
    "LoadedRecipe",
    "Parameter",
    "Problem",
    "Recipe",
    "RecipeError",
    "RecipeImportRefused",
    "RecipeIntegrityError",
    "RecipeInvalid",
    "RecipeNotFound",
    "RecipeStateError",
    "RunStep",
    "SampleStep",
    "SetParametersStep",
    "SignatureStep",
    "Step",
    "TagSpec",
    "WaitStep",
    "convert",
    "load_recipe_file",
    "load_recipe_text",
    "parse_recipe",
]
