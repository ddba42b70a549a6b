"""The datasets' published schemas (``tests/fixtures/hub/*.yaml``, described in its README.md), and
the two uses of them: building stand-in rows in a dataset's own columns (:func:`conform`) and
listing what a configured source needs from its dataset (:func:`missing`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from grokpath.config import InputError

FIXTURES_DIR = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hub"
DOLMA_FIXTURE = "dolma-v1_7"  # dolma v1.7 files read with the json builder share one format
# columns each record format reads (grokpath.selection.format_record)
FORMAT_COLUMNS = {
    "math": ["problem", "solution", "level", "type"],
    "humaneval": ["task_id", "prompt", "canonical_solution", "entry_point", "test"],
    "csqa": ["id", "question", "question_concept", "choices", "answerKey"],
    "mmlu": ["question", "subject", "choices", "answer"],
    "instruction": ["instruction", "output"],
}


def fixture_name(spec: dict) -> str:
    """File stem of a source's fixture: its hub id with '/' as '__', or dolma's for dolma file URLs."""
    files = spec.get("data_files")
    if files:
        first = files[0] if isinstance(files, list) else files
        if "dolma-v1_7" in first:
            return DOLMA_FIXTURE
        raise InputError(f"no fixture family for data files '{first}'")
    return spec["path"].replace("/", "__")


def load_fixture(name: str, fixtures_dir: Path = FIXTURES_DIR) -> dict:
    path = Path(fixtures_dir) / f"{name}.yaml"
    if not path.is_file():
        raise InputError(f"dataset fixture '{path}' does not exist")
    with open(path) as fh:
        fixture = yaml.safe_load(fh)
    for key in ("dataset", "source", "revision", "verified", "configs"):
        if key not in fixture:
            raise InputError(f"dataset fixture '{path}' has no '{key}'")
    return fixture


def _config(fixture: dict, config: str | None) -> dict:
    configs = fixture["configs"]
    return configs[config or "default"] if (config or "default") in configs else next(iter(configs.values()))


def placeholder(feature):
    """A typed empty value for a feature the stand-in generator does not write."""
    if isinstance(feature, list):
        return []
    if isinstance(feature, dict):
        if "class_label" in feature:
            return 0
        return {k: placeholder(v) for k, v in feature.items()}
    return {"string": "", "bool": False}.get(feature, 0)


def conform(rows: list[dict], fixture: dict, config: str | None = None) -> list[dict]:
    """Rows in the fixture's columns and order: a column the fixture lacks is an error (the generator
    invented it); a fixture column the rows lack gets a typed placeholder."""
    features = _config(fixture, config)["features"]
    out = []
    for row in rows:
        extra = sorted(set(row) - set(features))
        if extra:
            raise InputError(f"stand-in rows of '{fixture['dataset']}' have columns {extra} that its fixture does not publish")
        out.append({name: row[name] if name in row else placeholder(feature) for name, feature in features.items()})
    return out


def needed_columns(spec: dict) -> list[str]:
    """Columns a configured source reads from its dataset (before ``rename``)."""
    fmt = spec.get("format")
    needed = list(spec.get("text_fields") or ["text"]) if fmt == "text" else list(FORMAT_COLUMNS.get(fmt, []))
    needed += [spec["id_field"]] if spec.get("id_field") else []
    needed += [field.split(".")[0] for field in ((spec.get("filter") or {}).get("fields") or [])]
    inverse = {new: old for old, new in (spec.get("rename") or {}).items()}
    return list(dict.fromkeys(inverse.get(c, c) for c in needed))


def missing(spec: dict, fixture: dict) -> list[str]:
    """What a configured source asks of its dataset that the fixture does not publish: configs,
    data_dir, split, columns ('config x', 'split x', 'column x'); empty when all are there."""
    names = spec.get("name")
    configs = names if isinstance(names, list) else [names]
    problems = []
    for config in configs:
        if (config or "default") not in fixture["configs"]:
            problems.append(f"config {config}")
            continue
        entry = fixture["configs"][config or "default"]
        if spec.get("data_dir") and spec["data_dir"] not in entry.get("data_dirs", []):
            problems.append(f"data_dir {spec['data_dir']}")
        if (spec.get("split") or "train") not in entry["splits"]:
            problems.append(f"split {spec.get('split') or 'train'}")
        problems += [f"column {c}" for c in needed_columns(spec) if c not in entry["features"]]
    return problems
