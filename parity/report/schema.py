"""The report's JSON schema (schema.json) and a validator for the part of JSON Schema it uses
(type, enum, required, properties, additionalProperties, items, min/maxItems, minimum, maximum,
exclusiveMinimum, pattern, local $ref, anyOf, allOf): jsonschema is not among the pinned packages."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

SCHEMA_PATH = Path(__file__).with_name("schema.json")
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _is(value, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[kind])


def _resolve(ref: str, root: dict) -> dict:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref is supported, got {ref!r}")
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def errors(value, node: dict | None = None, path: str = "$", root: dict | None = None) -> list[str]:
    """Every violation as 'path: what'; empty when ``value`` conforms."""
    root = root or schema()
    node = root if node is None else node
    if "$ref" in node:
        return errors(value, _resolve(node["$ref"], root), path, root)
    out = []
    kinds = node.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            return [f"{path}: {type(value).__name__} is not {' or '.join(kinds)}"]
    if "enum" in node and value not in node["enum"]:
        out.append(f"{path}: {value!r} not in {node['enum']}")
    for sub in node.get("allOf", ()):
        out += errors(value, sub, path, root)
    if "anyOf" in node and all(errors(value, sub, path, root) for sub in node["anyOf"]):
        out.append(f"{path}: matches none of anyOf")
    if _is(value, "number"):
        if "minimum" in node and value < node["minimum"]:
            out.append(f"{path}: {value} < minimum {node['minimum']}")
        if "maximum" in node and value > node["maximum"]:
            out.append(f"{path}: {value} > maximum {node['maximum']}")
        if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
            out.append(f"{path}: {value} <= exclusiveMinimum {node['exclusiveMinimum']}")
    if isinstance(value, str) and "pattern" in node and not re.search(node["pattern"], value):
        out.append(f"{path}: {value!r} does not match {node['pattern']}")
    if isinstance(value, list):
        if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", len(value)):
            out.append(f"{path}: {len(value)} items, outside [{node.get('minItems', 0)}, {node.get('maxItems', '∞')}]")
        if "items" in node:
            for i, item in enumerate(value):
                out += errors(item, node["items"], f"{path}[{i}]", root)
    if isinstance(value, dict):
        props = node.get("properties", {})
        out += [f"{path}: missing {k!r}" for k in node.get("required", ()) if k not in value]
        extra = node.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                out += errors(v, props[k], f"{path}.{k}", root)
            elif extra is False:
                out.append(f"{path}: unexpected {k!r}")
            elif isinstance(extra, dict):
                out += errors(v, extra, f"{path}.{k}", root)
    return out


def validate(report: dict) -> None:
    problems = errors(report)
    if problems:
        raise ValueError(f"report for {report.get('model')!r} does not match {SCHEMA_PATH.name}: "
                         + "; ".join(problems[:10]) + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""))
