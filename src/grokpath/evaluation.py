"""Test accuracy per checkpoint: one lm-eval call per checkpoint for all domains.

Domain ``d`` is scored by the lm-eval task ``domains.<d>.task`` (default
``grokpath_<d>``). A task with a YAML in the tasks directory (``workflow/tasks``)
is a local task: its run-specific copy, with the test JSONL resolved to an absolute
path, is rendered into ``<out_dir>/tasks/`` before lm-eval runs. Any other name must
be an lm-eval built-in task (real mode, e.g. ``mmlu_college_chemistry``).

lm-eval does all the scoring; this module only renders task files, calls
``simple_evaluate`` once, and turns its logged samples into ``samples.parquet``
(ckpt, step, domain, sample_id, correct, response, target).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import yaml

from grokpath.checkpoints import parse_step
from grokpath.config import REPO_ROOT
from grokpath.io import atomic_dir, write_frame, write_json

log = logging.getLogger(__name__)

DEFAULT_TASKS_DIR = REPO_ROOT / "workflow" / "tasks"
DEFAULT_TASK = "grokpath_{domain}"  # as the domains schema default
SAMPLE_COLUMNS = ["ckpt", "step", "domain", "sample_id", "correct", "response", "target"]


def domain_tasks(domains: dict) -> dict[str, str]:
    """domain -> lm-eval task name (``domains.<d>.task`` with ``{domain}`` filled in)."""
    if not domains:
        raise ValueError("config section 'domains' is empty: nothing to evaluate")
    tasks = {domain: ((spec or {}).get("task") or DEFAULT_TASK).format(domain=domain) for domain, spec in domains.items()}
    seen: dict[str, str] = {}
    for domain, task in tasks.items():
        if task in seen:
            raise ValueError(f"domains.{domain}.task and domains.{seen[task]}.task both name lm-eval task '{task}'")
        seen[task] = domain
    return tasks


def local_task_yaml(tasks_dir: Path | str, task: str) -> Path | None:
    """The shipped YAML of a local task, or None for an lm-eval built-in task."""
    path = Path(tasks_dir) / f"{task}.yaml"
    return path if path.is_file() else None


def task_yaml_files(task_yaml: Path | str) -> list[Path]:
    """A task YAML and the files it includes (for a rule's inputs)."""
    task_yaml = Path(task_yaml)
    with open(task_yaml) as fh:
        includes = (yaml.safe_load(fh) or {}).get("include")
    files = [task_yaml]
    for name in [includes] if isinstance(includes, str) else includes or []:
        files += task_yaml_files(task_yaml.parent / name)
    return files


def _resolved_task_config(task_yaml: Path) -> dict:
    """A task YAML with its ``include`` chain merged in (included keys first, as lm-eval does)."""
    with open(task_yaml) as fh:
        config = yaml.safe_load(fh) or {}
    includes = config.pop("include", None)
    merged: dict = {}
    for name in [includes] if isinstance(includes, str) else includes or []:
        merged.update(_resolved_task_config(task_yaml.parent / name))
    merged.update(config)
    return merged


def render_local_tasks(
    evaluation: dict,
    local_tasks: dict[str, Path],
    test_files: dict[str, Path],
    out_dir: Path,
    cache_dir: Path,
) -> Path:
    """Write self-contained copies of the local task YAMLs into ``out_dir``.

    ``local_tasks``: task -> shipped YAML; ``test_files``: task -> test JSONL.
    The copies point at absolute data files, keep the datasets cache in ``cache_dir``
    and take ``max_gen_toks`` from the config.
    """
    with atomic_dir(out_dir) as tmp:  # a fresh set each run: no stale task files to index
        for task, task_yaml in local_tasks.items():
            _render_task(evaluation, task, task_yaml, test_files[task], cache_dir, tmp / f"{task}.yaml")
    return out_dir


def _render_task(evaluation: dict, task: str, task_yaml: Path, test_file: Path, cache_dir: Path, out: Path) -> None:
    """One self-contained task YAML: include chain merged, absolute data file, private cache."""
    resolved = _resolved_task_config(task_yaml)
    resolved.pop("task", None)  # the file name is the task name we look up
    config = {"task": task, **resolved}
    kwargs = dict(config.get("dataset_kwargs") or {})
    kwargs["data_files"] = {config.get("test_split", "test"): str(Path(test_file).resolve())}
    kwargs["cache_dir"] = str(Path(cache_dir).resolve())
    config["dataset_kwargs"] = kwargs
    config["generation_kwargs"] = {**config.get("generation_kwargs", {}), "max_gen_toks": evaluation["max_gen_toks"]}
    out.write_text(
        f"# rendered from {task_yaml} by grokpath.evaluation; do not edit\n"
        + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    )


def check_test_files(local_tasks: dict[str, Path], test_files: dict[str, Path]) -> None:
    """Fail before any model load if a local task's test JSONL is missing or lacks fields."""
    for task, task_yaml in local_tasks.items():
        path = test_files.get(task)
        if path is None:
            raise ValueError(f"task YAML {task_yaml} (task '{task}') has no test file: pass one for its domain")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"task YAML {task_yaml} (task '{task}'): test data file {path} does not exist")
        with open(path) as fh:
            first = fh.readline()
        try:
            record = json.loads(first)
        except json.JSONDecodeError as err:
            raise ValueError(f"test data file {path} (task '{task}', YAML {task_yaml}): line 1 is not JSON: {err}") from err
        missing = [k for k in ("sample_id", "prompt", "target") if k not in record]
        if missing:
            raise ValueError(f"test data file {path} (task '{task}', YAML {task_yaml}): records lack field(s) {missing}")


def model_args(evaluation: dict, checkpoints: dict, model_dir: Path | str) -> str:
    """lm-eval's ``model_args`` string for the hf model."""
    args = (
        f"pretrained={Path(model_dir).resolve()},"
        f"trust_remote_code={bool(checkpoints.get('trust_remote_code', False))},"
        f"dtype={evaluation['dtype']},"
        # MoE router aux loss is for training; transformers computes it in every forward when
        # on, and it breaks on cached generation (router logits of 1 token vs the full mask)
        "output_router_logits=False"
    )
    if checkpoints.get("tokenizer"):
        args += f",tokenizer={Path(checkpoints['tokenizer']).resolve()}"
    return args


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def checkpoint_step(checkpoint_dir: Path | str, ckpt: str) -> int:
    """Step from the checkpoint's provenance.json, else from its name."""
    provenance = Path(checkpoint_dir) / "provenance.json"
    if provenance.is_file():
        step = json.loads(provenance.read_text()).get("step")
        if step is not None:
            return int(step)
    return parse_step(ckpt)


@contextlib.contextmanager
def _offline_env(cache_dir: Path, allow_code_execution: bool) -> Iterator[None]:
    """Offline HF, a private datasets cache; restored afterwards."""
    settings = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(Path(cache_dir).resolve()),
    }
    if allow_code_execution:
        settings["HF_ALLOW_CODE_EVAL"] = "1"  # HF `evaluate`'s code_eval refuses to run without it
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _response_text(sample: dict, output_type: str) -> str:
    response = sample["filtered_resps"][0] if sample["filtered_resps"] else ""
    if output_type == "multiple_choice":
        # one (loglikelihood, is_greedy) per choice: report the chosen index
        scores = [r[0] if isinstance(r, (list, tuple)) else float(r) for r in sample["filtered_resps"]]
        return str(max(range(len(scores)), key=scores.__getitem__)) if scores else ""
    return response if isinstance(response, str) else json.dumps(response, default=str)


def leaf_tasks(task: str, group_subtasks: dict[str, list[str]]) -> list[str]:
    """The tasks lm-eval logs samples for: a group (e.g. ``minerva_math``) expands to its subtasks."""
    subtasks = group_subtasks.get(task) or []
    return [leaf for sub in subtasks for leaf in leaf_tasks(sub, group_subtasks)] if subtasks else [task]


def samples_frame(
    results: dict[str, Any],
    task_domains: dict[str, str],
    scoring: dict[str, dict],
    ckpt: str,
    step: int,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per (domain, test sample) from lm-eval's logged samples (``results["samples"]``).

    ``correct`` is full credit (value >= 1) on the task's scoring metric under its
    scoring filter: ``evaluation.scoring.<task>`` or the first metric and filter lm-eval logged.
    Returns the frame and leaf task -> "metric,filter" (lm-eval's results key).
    """
    rows, keys = [], {}
    for task, domain in task_domains.items():
        leaves = leaf_tasks(task, results.get("group_subtasks", {}))
        for leaf in leaves:
            logged = results["samples"].get(leaf)
            if not logged:
                raise ValueError(f"lm-eval logged no samples for task '{leaf}' (domain '{domain}')")
            choice = scoring.get(leaf) or scoring.get(task) or {}
            filter_key = choice.get("filter") or logged[0]["filter"]
            metric = choice.get("metric") or logged[0]["metrics"][0]
            chosen = [s for s in logged if s["filter"] == filter_key]
            if not chosen:
                raise ValueError(f"evaluation.scoring.{task}.filter '{filter_key}' not among lm-eval's filters for task '{leaf}'")
            if metric not in chosen[0]:
                raise ValueError(f"evaluation.scoring.{task}.metric '{metric}' not among {chosen[0]['metrics']} for task '{leaf}'")
            keys[leaf] = f"{metric},{filter_key}"
            output_type = results["configs"][leaf]["output_type"]
            for sample in sorted(chosen, key=lambda s: s["doc_id"]):
                doc = sample["doc"] if isinstance(sample["doc"], dict) else {}
                fallback_id = f"{leaf}:{sample['doc_id']}" if len(leaves) > 1 else str(sample["doc_id"])
                rows.append(
                    {
                        "ckpt": ckpt,
                        "step": step,
                        "domain": domain,
                        "sample_id": str(doc.get("sample_id", fallback_id)),
                        "correct": bool(float(sample[metric]) >= 1.0),
                        "response": _response_text(sample, output_type),
                        "target": str(sample["target"]),
                    }
                )
    frame = pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
    frame = frame.astype({"ckpt": "string", "step": "int64", "domain": "string", "sample_id": "string",
                          "correct": "bool", "response": "string", "target": "string"})
    return frame, keys


def run_evaluation(
    cfg: dict,
    checkpoint_dir: Path | str,
    ckpt: str,
    out_dir: Path | str,
    *,
    test_files: dict[str, Path | str] | None = None,
    tasks_dir: Path | str = DEFAULT_TASKS_DIR,
    threads: int | None = None,
) -> pd.DataFrame:
    """Evaluate one checkpoint on every domain's test task with one lm-eval call.

    ``cfg``: the ``evaluation``, ``domains`` and (optional) ``checkpoints`` sections. ``test_files``: domain ->
    test JSONL (needed for local tasks). Writes ``<out_dir>/lm_eval.json`` (lm-eval's
    results without the per-sample log) and ``<out_dir>/samples.parquet``.
    """
    evaluation, domains = cfg["evaluation"], cfg["domains"]
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    test_files = {d: Path(p) for d, p in (test_files or {}).items()}
    unknown = sorted(set(test_files) - set(domains))
    if unknown:
        raise ValueError(f"test files given for domain(s) {unknown} not in config 'domains' {sorted(domains)}")

    # -- cheap checks first: task names, data files, checkpoint
    task_of = domain_tasks(domains)
    task_domains = {task: domain for domain, task in task_of.items()}
    local_tasks = {task: y for task in task_domains if (y := local_task_yaml(tasks_dir, task)) is not None}
    check_test_files(local_tasks, {t: test_files[d] for t, d in task_domains.items() if d in test_files})
    if not (checkpoint_dir / "config.json").is_file():
        raise FileNotFoundError(f"checkpoint '{ckpt}': {checkpoint_dir} is not a saved HF model (no config.json)")
    step = checkpoint_step(checkpoint_dir, ckpt)

    out_dir.mkdir(parents=True, exist_ok=True)
    throwaway_cache = evaluation["datasets_cache"] is None
    for stale in out_dir.glob(".hf_datasets.*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    cache_dir = Path(tempfile.mkdtemp(prefix=".hf_datasets.", dir=out_dir)) if throwaway_cache else Path(evaluation["datasets_cache"])
    try:
        with _offline_env(cache_dir, evaluation["allow_code_execution"]):
            rendered = render_local_tasks(
                evaluation,
                local_tasks,
                {t: test_files[task_domains[t]] for t in local_tasks},
                out_dir / "tasks",
                cache_dir,
            )
            results = _call_lm_eval(evaluation, cfg.get("checkpoints", {}), checkpoint_dir, list(task_domains), rendered,
                                    include_defaults=len(local_tasks) < len(task_domains), threads=threads)
    finally:
        if throwaway_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)

    frame, keys = samples_frame(results, task_domains, evaluation["scoring"], ckpt, step)
    for task, domain in task_domains.items():
        in_domain = frame["domain"] == domain
        accuracy = frame.loc[in_domain, "correct"].mean()
        log.info("%s %s (%s): accuracy %.4f over %d samples", ckpt, domain, task, accuracy, int(in_domain.sum()))
        key = keys.get(task)  # a group's aggregate may weigh subtasks differently: compare leaves only
        reported = results["results"].get(task, {}).get(key) if key else None
        if isinstance(reported, (int, float)) and abs(float(reported) - accuracy) > 1e-9:
            log.warning("task '%s': lm-eval's %s = %s differs from mean(correct) = %s (metric is not 0/1 per sample)",
                        task, key, reported, accuracy)

    summary = {k: v for k, v in results.items() if k != "samples"}
    summary["grokpath"] = {"ckpt": ckpt, "step": step, "checkpoint_dir": str(checkpoint_dir),
                           "task_of_domain": task_of, "scoring_key": keys}
    write_json(summary, out_dir / "lm_eval.json")
    write_frame(frame, out_dir / "samples.parquet", metadata={"ckpt": ckpt, "step": step, "scoring_key": keys})
    return frame


def _call_lm_eval(
    evaluation: dict,
    checkpoints: dict,
    model_dir: Path,
    tasks: list[str],
    include_path: Path,
    *,
    include_defaults: bool,
    threads: int | None,
) -> dict[str, Any]:
    """The one lm-eval call; imports here so the offline environment is set first."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if threads:
        torch.set_num_threads(int(threads))
    task_manager = TaskManager(include_path=str(include_path), include_defaults=include_defaults)
    missing = [t for t in tasks if t not in task_manager.all_tasks]
    if missing:
        raise ValueError(f"lm-eval task(s) {missing} are neither in {include_path} nor lm-eval built-ins (domains.<d>.task)")
    started = time.perf_counter()
    results = simple_evaluate(
        model="hf",
        model_args=model_args(evaluation, checkpoints, model_dir),
        tasks=tasks,
        batch_size=evaluation["batch_size"],
        device=resolve_device(evaluation["device"]),
        limit=evaluation["limit"],
        log_samples=True,
        task_manager=task_manager,
        confirm_run_unsafe_code=evaluation["allow_code_execution"],
        bootstrap_iters=evaluation["bootstrap_iters"],
    )
    log.info("lm-eval on %s: %d task(s) in %.1f s", model_dir, len(tasks), time.perf_counter() - started)
    return results
