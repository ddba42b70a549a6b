"""The generic exact-match task: any domain, any name, one leaf task per domain, no task YAML of the study's own
(the end-to-end run is tests/test_olmo_core.py::test_olmo_core_study_end_to_end, three domains)."""

from __future__ import annotations

import json

import pytest
import yaml

from grokpath.config import validate
from grokpath.evaluation import (
    DEFAULT_TASKS_DIR,
    GENERIC_TASK,
    check_test_files,
    domain_tasks,
    local_task_yaml,
    render_local_tasks,
    task_yaml_files,
)

DOMAINS = ["organic-chem", "units", "Proofs2"]


def test_each_domain_gets_its_own_leaf_task_and_named_tasks_keep_theirs():
    tasks = domain_tasks({**{d: {"task": GENERIC_TASK} for d in DOMAINS}, "math": {}, "csqa": {"task": "commonsense_qa"}})
    assert tasks == {
        "organic-chem": "grokpath_exact_match_organic-chem",
        "units": "grokpath_exact_match_units",
        "Proofs2": "grokpath_exact_match_Proofs2",
        "math": "grokpath_math",
        "csqa": "commonsense_qa",
    }
    generic = DEFAULT_TASKS_DIR / f"{GENERIC_TASK}.yaml"
    assert local_task_yaml(DEFAULT_TASKS_DIR, "grokpath_exact_match_units") == generic
    assert local_task_yaml(DEFAULT_TASKS_DIR, "grokpath_math") == DEFAULT_TASKS_DIR / "grokpath_math.yaml"
    assert local_task_yaml(DEFAULT_TASKS_DIR, "commonsense_qa") is None  # an lm-eval built-in
    assert [f.name for f in task_yaml_files(generic)] == ["grokpath_exact_match.yaml", "_grokpath_template_yaml"]


def test_rendered_leaf_tasks_index_in_lm_eval_each_on_its_domains_test_file(tmp_path):
    from lm_eval.tasks import TaskManager

    cfg = validate({"domains": {d: {"task": GENERIC_TASK} for d in DOMAINS}})
    tasks = domain_tasks(cfg["domains"])
    test_files = {}
    for domain, task in tasks.items():
        path = tmp_path / domain / "test.jsonl"
        path.parent.mkdir()
        path.write_text(json.dumps({"sample_id": f"{domain}-0", "prompt": "a", "target": "b", "text": "a b\n"}) + "\n")
        test_files[task] = path
    local = {task: local_task_yaml(DEFAULT_TASKS_DIR, task) for task in tasks.values()}
    check_test_files(local, test_files)
    out = render_local_tasks(cfg["evaluation"], local, test_files, tmp_path / "tasks", tmp_path / "cache")
    indexed = set(TaskManager(include_path=str(out), include_defaults=False).all_tasks)
    assert indexed == set(tasks.values())
    for domain, task in tasks.items():
        rendered = yaml.safe_load((out / f"{task}.yaml").read_text())
        assert rendered["task"] == f"grokpath_exact_match_{domain}"
        assert rendered["dataset_kwargs"]["data_files"] == {"test": str((tmp_path / domain / "test.jsonl").resolve())}
        assert rendered["filter_list"][0]["name"] == "strip" and rendered["metric_list"][0]["metric"] == "exact_match"
        assert rendered["generation_kwargs"]["max_gen_toks"] == cfg["evaluation"]["max_gen_toks"]


def test_a_test_file_without_target_is_named(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({"sample_id": "x", "prompt": "a"}) + "\n")
    task = "grokpath_exact_match_units"
    with pytest.raises(ValueError, match=r"test.jsonl \(task 'grokpath_exact_match_units'.*lack field\(s\) \['target'\]"):
        check_test_files({task: local_task_yaml(DEFAULT_TASKS_DIR, task)}, {task: path})
