"""Every dataset the defaults read has a fixture of its published schema, and every configured
column, split, config and data_dir is in it; stand-in rows are built from the fixtures."""

from __future__ import annotations

import pytest

from grokpath.config import InputError, validate
from grokpath.standin.fixtures import conform, fixture_name, load_fixture, missing, needed_columns

DATA = validate({})["data"]
SOURCES = {f"data.domains.{d}.{s}": spec for d, splits in DATA["domains"].items() for s, spec in splits.items()}
SOURCES |= {f"data.tuning.sets.{name}": spec for name, spec in DATA["tuning"]["sets"].items()}


def _mix_sources() -> dict:
    """The training-side sources of config/olmoe_mix.yaml, merged onto the defaults as the overlay is."""
    import yaml

    from grokpath.config import REPO_ROOT

    overlay = yaml.safe_load((REPO_ROOT / "config" / "olmoe_mix.yaml").read_text())
    merged = validate({"data": overlay["data"]})["data"]
    return {f"olmoe_mix: {d}.train": merged["domains"][d]["train"] for d in merged["domains"]}


MIX = _mix_sources()


def test_the_mix_config_draws_every_training_side_from_olmoe_mix():
    assert {spec["path"] for spec in MIX.values()} == {"allenai/OLMoE-mix-0924"}
    assert sorted(spec["data_dir"] for spec in MIX.values()) == ["data/dclm", "data/open-web-math", "data/starcoder", "data/wiki"]


@pytest.mark.parametrize("key", sorted(MIX))
def test_the_mix_sources_are_in_their_fixture(key):
    assert missing(MIX[key], load_fixture(fixture_name(MIX[key]))) == []


def test_the_defaults_cover_every_domain_split_and_tuning_set():
    assert len(SOURCES) == 4 * 3 + 3


@pytest.mark.parametrize("key", sorted(SOURCES))
def test_every_configured_column_split_and_config_is_in_the_fixture(key):
    spec = SOURCES[key]
    fixture = load_fixture(fixture_name(spec))
    assert "https://" in fixture["source"] or "wheel" in fixture["source"]
    assert fixture["revision"] and fixture["verified"]
    assert missing(spec, fixture) == [], f"{key} ({fixture['dataset']})"


def test_a_column_the_dataset_does_not_publish_is_caught():
    """The bug the fixtures exist for: dart-math's solution column is resp, not response."""
    dart = load_fixture("hkust-nlp__dart-math-pool-math")
    wrong = {**SOURCES["data.domains.math.validation"], "text_fields": ["query", "response"]}
    assert missing(wrong, dart) == ["column response"]
    mmlu = load_fixture("cais__mmlu")
    assert missing({**SOURCES["data.domains.domain.test"], "split": "train"}, mmlu) == ["split train"]
    assert missing({**SOURCES["data.domains.domain.test"], "name": "college_physics"}, mmlu) == ["config college_physics"]
    math = load_fixture("EleutherAI__hendrycks_math")
    assert missing({**SOURCES["data.domains.math.test"], "name": ["algebra", "calculus"]}, math) == ["config calculus"]
    starcoder = load_fixture("bigcode__starcoderdata")
    assert missing({**SOURCES["data.domains.code.train"], "data_dir": "rust"}, starcoder) == ["data_dir rust"]


def test_needed_columns_follow_format_rename_id_and_filter():
    assert needed_columns(SOURCES["data.tuning.sets.metamathqa"]) == ["query", "response"]  # before rename
    assert needed_columns(SOURCES["data.domains.commonsense.validation"]) == ["inputs", "targets", "task_name"]
    assert needed_columns(SOURCES["data.domains.code.test"]) == ["task_id", "prompt", "canonical_solution", "entry_point", "test"]


def test_stand_in_rows_take_the_fixture_columns_and_refuse_invented_ones():
    fixture = load_fixture("chemNLP__chemistry-bookshelves-merged")
    rows = conform([{"title": "Alkanes", "url": "https://x/1", "text": "Carbon chains."}], fixture)
    assert rows == [{"title": "Alkanes", "url": "https://x/1", "text": "Carbon chains.", "__index_level_0__": 0}]
    csqa = load_fixture("tau__commonsense_qa")
    assert conform([{"id": "q1"}], csqa)[0]["choices"] == {"label": [], "text": []}
    with pytest.raises(InputError, match=r"'hkust-nlp/dart-math-pool-math' have columns \['response'\]"):
        conform([{"query": "1+1?", "response": "2"}], load_fixture("hkust-nlp__dart-math-pool-math"))


# The paper's ids (arXiv 2506.21551v4, Appendix A, Table 2) whose cards publish no columns: their
# fixtures record what could be transcribed, and the defaults keep a substitute (docs/DATASETS.md).
PAPER_IDS_WITHOUT_COLUMNS = ["emozilla/dolma-v1_7-books", "blester125/mediawiki-dolma", "qwedsacf/competition_math"]
SOURCES_NOTES = " ".join(spec.get("note") or "" for spec in SOURCES.values())


@pytest.mark.parametrize("dataset", PAPER_IDS_WITHOUT_COLUMNS)
def test_a_paper_id_without_published_columns_is_not_configured(dataset):
    fixture = load_fixture(dataset.replace("/", "__"))
    assert fixture["complete"] is False and all(c["features"] == {} for c in fixture["configs"].values())
    assert dataset not in {spec.get("path") for spec in SOURCES.values()}
    assert dataset in SOURCES_NOTES, f"no default source's note gives the reason {dataset} is not used"


def test_the_code_tuning_set_is_the_papers_id():
    spec = SOURCES["data.tuning.sets.codealpaca"]
    assert spec["path"] == "HuggingFaceH4/CodeAlpaca_20K" and spec["split"] == "train"
    assert needed_columns(spec) == ["prompt", "completion"]
