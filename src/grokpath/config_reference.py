"""config/README.md, rendered from the schema: one table per top-level section.

The schema is the one source of every default and description; this module only formats it,
so the reference cannot drift from what validation enforces. The `config.yaml` column shows
what the embedded mini study sets on top of the defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from grokpath.config import REPO_ROOT, SCHEMA_PATH, load_schema

README_PATH = REPO_ROOT / "config" / "README.md"
MINI_CONFIG_PATH = REPO_ROOT / "config" / "config.yaml"

HEADER = """\
# Config reference

Generated from `workflow/schemas/config.schema.yaml` by `python scripts/config_docs.py`; do not edit by
hand (a test fails when this file is stale). The schema holds every default; `config/config.yaml` sets
only what the embedded mini study deliberately changes, shown in the `config.yaml` column.

A study config given with `--configfile` stands alone: the schema fills every key it leaves out, and
`config/config.yaml` applies only when no `--configfile` is given. Study configs: `config/olmoe.yaml`
(the real OLMoE-1B-7B study from the hub; `config/olmoe_standin.yaml` on top of it runs the real DAG
against local stand-ins). Overlays on the mini study name it first,
`snakemake --cores all --configfile config/config.yaml config/<overlay>.yaml`: `config/smoke.yaml` (the
whole DAG in about a minute, used by the tests), `config/circuits_paper.yaml` (paper B's full grids, for a
GPU or a cluster).

The config is validated at load time: an unknown key or a wrong type fails with the key's full name
before any job runs. Descriptions marked *our choice* are points the papers leave open.
"""


def _value(value) -> str:
    if value is None:
        return "`null`"
    return "`" + json.dumps(value, ensure_ascii=False) + "`"


def _type(node: dict) -> str:
    if "enum" in node:
        return " | ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind == "array" and isinstance(node.get("items"), dict) and "type" in node["items"]:
        return f"array of {node['items']['type']}"
    if kind is None and ("anyOf" in node or "oneOf" in node):
        return " | ".join(_type(option) for option in node.get("anyOf", node.get("oneOf")))
    if kind is None and "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    return kind or "any"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _lookup(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None, False
        node = node[part]
    return node, True


def _rows(node: dict, prefix: str, mini: dict):
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}.{name}"
        if sub.get("type") == "object" and "properties" in sub:
            if sub.get("description"):
                yield key, "object", "", "", sub["description"]
            yield from _rows(sub, key, mini)
            continue
        set_value, is_set = _lookup(mini, key)
        yield (
            key,
            _type(sub),
            _value(sub["default"]) if "default" in sub else "—",
            _value(set_value) if is_set else "",
            sub.get("description", ""),
        )


def render(schema: dict, mini: dict) -> str:
    parts = [HEADER]
    for section, node in schema.get("properties", {}).items():
        parts.append(f"\n## {section}\n")
        if node.get("description"):
            parts.append(" ".join(node["description"].split()) + "\n")
        rows = list(_rows(node, section, mini))
        if not rows:
            extra = node.get("additionalProperties")
            if isinstance(extra, dict) and extra.get("description"):
                parts.append(" ".join(extra["description"].split()) + "\n")
            continue
        parts.append("\n| key | type | default | config.yaml | meaning |\n|---|---|---|---|---|\n")
        for key, kind, default, set_value, description in rows:
            parts.append(f"| `{key}` | {_cell(kind)} | {_cell(default)} | {_cell(set_value)} | {_cell(description)} |\n")
    return "".join(parts)


def render_repository(schema_path: Path = SCHEMA_PATH, mini_path: Path = MINI_CONFIG_PATH) -> str:
    with open(mini_path) as fh:
        mini = yaml.safe_load(fh) or {}
    return render(load_schema(schema_path), mini)
