"""The small schemas the catalog files' schemas are built from: names (slugs), sizes with a
unit, seconds, lists of names.
"""

from __future__ import annotations

from typing import Any

# "(?!\n)$": Python's re (which jsonschema uses) lets "$" match before a final newline.
SLUG = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(?!\n)$"
SLUG_HELP = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
# Numbers pass the schema so that the size parser can say that a unit is missing.
SIZE: dict[str, Any] = {
    "type": ["string", "number"],
    "description": "a size with a unit: '512MiB', '20GiB', '2TiB'",
}
SECONDS: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}
STR_LIST: dict[str, Any] = {"type": "array", "items": {"type": "string", "minLength": 1}}
