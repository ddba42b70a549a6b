"""config/README.md is generated from the schema: stale docs fail, and rows carry the schema's values."""

from __future__ import annotations

from grokpath.config_reference import README_PATH, render, render_repository


def test_config_readme_is_generated_from_the_schema():
    assert README_PATH.read_text() == render_repository(), "config/README.md is stale: run python scripts/config_docs.py"


def test_rows_show_default_mini_value_and_description():
    schema = {
        "properties": {
            "world": {
                "type": "object",
                "description": "the mini world",
                "properties": {
                    "train_fraction": {"type": "number", "default": 0.5, "description": "share | in train"},
                    "kind": {"type": "string", "enum": ["a", "b"], "default": "a"},
                    "inner": {"type": "object", "properties": {"n": {"type": "integer"}}},
                },
            }
        }
    }
    text = render(schema, {"world": {"train_fraction": 0.6}})
    assert "## world\nthe mini world\n" in text
    assert "| `world.train_fraction` | number | `0.5` | `0.6` | share \\| in train |" in text
    assert '| `world.kind` | `a` \\| `b` | `"a"` |  |  |' in text
    assert "| `world.inner.n` | integer | — |  |  |" in text
