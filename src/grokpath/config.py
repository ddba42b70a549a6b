"""The one reader of the study config: load YAML, fill schema defaults, validate.

The Snakefile validates the study config with it; each rule hands its function the
validated sections (grokpath.step), so library code never re-reads YAML.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class InputError(ValueError):
    """Bad input the user can fix (config, data, checkpoint, device); the message names it in one line."""


class ConfigError(InputError):
    """A config value is missing, unknown or of the wrong type; the message names the key."""


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = json.loads(json.dumps(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


DefaultFillingValidator = _with_defaults(jsonschema.Draft202012Validator)


def load_schema(path: Path | str = SCHEMA_PATH) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def key_path(error: jsonschema.ValidationError) -> str:
    """Dotted key of a validation error, e.g. ``pathways.threshold``."""
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        parts += extra[:1]
    elif error.validator == "required":
        missing = [r for r in error.validator_value if r not in error.instance]
        parts += missing[:1]
    return ".".join(parts) or "<root>"


def validate(config: dict, schema: dict | None = None) -> dict:
    """Fill defaults in place and validate; raise ConfigError naming the first bad key."""
    schema = schema or load_schema()
    validator = DefaultFillingValidator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        first = errors[0]
        raise ConfigError(f"config key '{key_path(first)}': {first.message}")
    return config


def load(path: Path | str, overrides: dict | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    if overrides:
        config = deep_merge(config, overrides)
    return validate(config)


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
