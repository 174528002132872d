"""Check data against the workflow JSON Schema: ``jsonschema`` when installed, else a small subset.

The subset covers every keyword ``treasury schema`` emits ($ref, type, properties,
additionalProperties, required, items, anyOf, oneOf, enum, pattern, length and item
bounds, numeric bounds, default/title/description ignored). It refuses unknown keywords,
so a schema change that it cannot judge fails loudly instead of passing quietly.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
_IGNORED = {"title", "description", "default", "$schema", "$id", "$defs", "examples"}


def schema_errors(schema: dict[str, Any], data: Any) -> list[str]:
    """Every violation of ``schema`` by ``data`` (empty when valid)."""
    try:
        import jsonschema
    except ImportError:
        return _check(schema, schema, data, "$")
    validator = jsonschema.Draft202012Validator(schema)
    return [e.message for e in validator.iter_errors(data)]


def _check(root: dict[str, Any], node: dict[str, Any], data: Any, at: str) -> list[str]:
    errors: list[str] = []
    for key, rule in node.items():
        if key in _IGNORED:
            continue
        if key == "$ref":
            assert rule.startswith("#/$defs/"), rule
            errors += _check(root, root["$defs"][rule.removeprefix("#/$defs/")], data, at)
        elif key == "type":
            if not _TYPES[rule](data):
                errors.append(f"{at}: not {rule}")
        elif key == "enum":
            if data not in rule:
                errors.append(f"{at}: {data!r} not in {rule}")
        elif key == "pattern":
            if isinstance(data, str) and not re.search(rule, data):
                errors.append(f"{at}: {data!r} does not match {rule}")
        elif key in ("maxLength", "minLength"):
            if isinstance(data, str) and (len(data) > rule if key == "maxLength" else len(data) < rule):
                errors.append(f"{at}: length {len(data)} breaks {key} {rule}")
        elif key in ("maxItems", "minItems"):
            if isinstance(data, list) and (len(data) > rule if key == "maxItems" else len(data) < rule):
                errors.append(f"{at}: {len(data)} items breaks {key} {rule}")
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if _TYPES["number"](data):
                ok = {"minimum": data >= rule, "maximum": data <= rule,
                      "exclusiveMinimum": data > rule, "exclusiveMaximum": data < rule}[key]
                if not ok:
                    errors.append(f"{at}: {data} breaks {key} {rule}")
        elif key == "properties":
            if isinstance(data, dict):
                for name, sub in rule.items():
                    if name in data:
                        errors += _check(root, sub, data[name], f"{at}.{name}")
        elif key == "additionalProperties":
            if isinstance(data, dict):
                extra = set(data) - set(node.get("properties", {}))
                if rule is False and extra:
                    errors.append(f"{at}: unexpected {sorted(extra)}")
                elif isinstance(rule, dict):
                    for name in extra:
                        errors += _check(root, rule, data[name], f"{at}.{name}")
        elif key == "required":
            if isinstance(data, dict):
                errors += [f"{at}: missing {name}" for name in rule if name not in data]
        elif key == "items":
            if isinstance(data, list):
                for i, item in enumerate(data):
                    errors += _check(root, rule, item, f"{at}[{i}]")
        elif key in ("anyOf", "oneOf"):
            passing = sum(1 for sub in rule if not _check(root, sub, data, at))
            if passing == 0 or (key == "oneOf" and passing > 1):
                errors.append(f"{at}: {passing} of {key} branches match")
        else:
            raise AssertionError(f"schema keyword {key!r} is not understood by this checker")
    return errors
