"""Test accuracy per checkpoint: one lm-eval call per checkpoint for all domains.

Domain ``d`` is scored by the lm-eval task ``domains.<d>.task`` (default
``grokpath_<d>``). A task with a YAML in the tasks directory (``workflow/tasks``)
is a local task: its run-specific copy, with the test JSONL resolved to an absolute
path, is rendered into ``<out_dir>/tasks/`` before lm-eval runs. Any other name must
be an lm-eval built-in task (real mode, e.g. ``mmlu_college_chemistry``).

Local tasks shipped there: the generic ``grokpath_exact_match`` (prompt/target exact match on
any domain: rendered once per domain as the leaf task ``grokpath_exact_match_<domain>`` reading
that domain's test JSONL, so a study declares any number of domains without task YAML of its
own), the mini world's ``grokpath_<domain>`` tasks (the same template) and the benchmark tasks of the real study
(``grokpath_minerva_math``, ``grokpath_humaneval_plus``, ``grokpath_commonsense_qa``,
``grokpath_mmlu_college_chemistry``), which read our own filtered test JSONL and take
the built-in tasks' prompt, extraction and metric from lm-eval's task code
(``workflow/tasks/grokpath_benchmarks.py``). The code task's pass@1 runs generated
programs in :mod:`grokpath.sandbox`, and only with ``evaluation.allow_code_execution``.

With LoRA tuning, each domain is evaluated with its own adapter (lm-eval's ``peft=``
model argument): one ``simple_evaluate`` call per adapter, all in one job.

lm-eval does all the scoring; this module only renders task files, calls
``simple_evaluate``, and turns its logged samples into ``samples.parquet``
(ckpt, step, revision_sha, domain, sample_id, correct, response, target).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from grokpath.checkpoints import checkpoint_step, read_provenance
from grokpath.config import REPO_ROOT
from grokpath.devices import resolve_device, use_threads
from grokpath.io import atomic_dir, write_frame, write_json
from grokpath.sandbox import SETTINGS_ENV as CODE_EXECUTION_ENV

log = logging.getLogger(__name__)

DEFAULT_TASKS_DIR = REPO_ROOT / "workflow" / "tasks"
DEFAULT_TASK = "grokpath_{domain}"  # as the domains schema default
# The generic exact-match task: domains.<d>.task names it, each domain gets its own leaf task.
GENERIC_TASK = "grokpath_exact_match"
SAMPLE_COLUMNS = ["ckpt", "step", "revision_sha", "domain", "sample_id", "correct", "response", "target"]
# fields every record of a local task's test JSONL needs unless the task's metadata.required_fields says
DEFAULT_REQUIRED_FIELDS = ("sample_id", "prompt", "target")


class FunctionRef(str):
    """A task YAML's ``!function module.name`` reference, kept as text when we copy a task."""


class _TaskLoader(yaml.SafeLoader):
    pass


class _TaskDumper(yaml.SafeDumper):
    pass


_TaskLoader.add_constructor("!function", lambda loader, node: FunctionRef(loader.construct_scalar(node)))
_TaskDumper.add_representer(FunctionRef, lambda dumper, ref: dumper.represent_scalar("!function", str(ref)))


def _load_task_yaml(path: Path) -> dict:
    with open(path) as fh:
        return yaml.load(fh, Loader=_TaskLoader) or {}


def _function_modules(node: Any) -> set[str]:
    """Module names of every ``!function module.name`` inside a task config."""
    if isinstance(node, FunctionRef):
        return {node.rsplit(".", 1)[0]}
    if isinstance(node, dict):
        return set().union(*(_function_modules(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_function_modules(v) for v in node))
    return set()


def generic_task_name(domain: str) -> str:
    """The leaf task of ``domain`` under the generic exact-match task."""
    return f"{GENERIC_TASK}_{domain}"


def domain_tasks(domains: dict) -> dict[str, str]:
    """domain -> lm-eval task name (``domains.<d>.task`` with ``{domain}`` filled in; the generic
    ``grokpath_exact_match`` becomes the domain's own ``grokpath_exact_match_<domain>``)."""
    if not domains:
        raise ValueError("config section 'domains' is empty: nothing to evaluate")
    tasks = {domain: ((spec or {}).get("task") or DEFAULT_TASK).format(domain=domain) for domain, spec in domains.items()}
    tasks = {domain: generic_task_name(domain) if task == GENERIC_TASK else task for domain, task in tasks.items()}
    seen: dict[str, str] = {}
    for domain, task in tasks.items():
        if task in seen:
            raise ValueError(f"domains.{domain}.task and domains.{seen[task]}.task both name lm-eval task '{task}'")
        seen[task] = domain
    return tasks


def local_task_yaml(tasks_dir: Path | str, task: str) -> Path | None:
    """The shipped YAML of a local task (a domain's generic leaf task: the generic task's), or None
    for an lm-eval built-in task."""
    path = Path(tasks_dir) / f"{task}.yaml"
    if path.is_file():
        return path
    generic = Path(tasks_dir) / f"{GENERIC_TASK}.yaml"
    if task.startswith(f"{GENERIC_TASK}_") and generic.is_file():
        return generic
    return None


def task_yaml_files(task_yaml: Path | str) -> list[Path]:
    """A task YAML, the files it includes and the Python modules its ``!function``s name (a rule's inputs)."""
    task_yaml = Path(task_yaml)
    config = _load_task_yaml(task_yaml)
    includes = config.get("include")
    files = [task_yaml]
    for name in [includes] if isinstance(includes, str) else includes or []:
        files += task_yaml_files(task_yaml.parent / name)
    files += [task_yaml.parent / f"{module}.py" for module in sorted(_function_modules(config))]
    return list(dict.fromkeys(files))


def _resolved_task_config(task_yaml: Path) -> dict:
    """A task YAML with its ``include`` chain merged in (included keys first, as lm-eval does)."""
    config = _load_task_yaml(task_yaml)
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
    and take ``max_gen_toks`` from the config (generation tasks); the Python modules
    their ``!function``s name are copied beside them.
    """
    with atomic_dir(out_dir) as tmp:  # a fresh set each run: no stale task files to index
        for task, task_yaml in local_tasks.items():
            _render_task(evaluation, task, task_yaml, test_files[task], cache_dir, tmp / f"{task}.yaml")
            for module in _function_modules(_resolved_task_config(task_yaml)):
                source = Path(task_yaml).parent / f"{module}.py"
                if not source.is_file():
                    raise FileNotFoundError(
                        f"task YAML {task_yaml} names !function module '{module}' but {source} does not exist"
                    )
                shutil.copyfile(source, tmp / source.name)
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
    if config.get("output_type", "generate_until") == "generate_until":
        config["generation_kwargs"] = {**config.get("generation_kwargs", {}), "max_gen_toks": evaluation["max_gen_toks"]}
    out.write_text(
        f"# rendered from {task_yaml} by grokpath.evaluation; do not edit\n"
        + yaml.dump(config, Dumper=_TaskDumper, sort_keys=False, allow_unicode=True)
    )


def task_metadata(task_yaml: Path | str) -> dict:
    """The ``metadata`` block of a local task (``required_fields``, ``executes_code``)."""
    return _resolved_task_config(Path(task_yaml)).get("metadata") or {}


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
        required = task_metadata(task_yaml).get("required_fields") or DEFAULT_REQUIRED_FIELDS
        missing = [k for k in required if k not in record]
        if missing:
            raise ValueError(f"test data file {path} (task '{task}', YAML {task_yaml}): records lack field(s) {missing}")


def model_args(evaluation: dict, checkpoints: dict, model_dir: Path | str, adapter: Path | str | None = None) -> str:
    """lm-eval's ``model_args`` string for the hf model (``adapter``: a LoRA adapter dir, lm-eval's ``peft=``)."""
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
    if adapter is not None:
        args += f",peft={Path(adapter).resolve()}"
    return args


@contextlib.contextmanager
def _offline_env(cache_dir: Path, evaluation: dict) -> Iterator[None]:
    """Offline HF, a private datasets cache, the code sandbox's settings; restored afterwards."""
    allow_code_execution = bool(evaluation["allow_code_execution"])
    settings = {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(Path(cache_dir).resolve()),
        CODE_EXECUTION_ENV: json.dumps({"allow": allow_code_execution, **evaluation["sandbox"]}),
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


def _target_text(sample: dict, output_type: str) -> str:
    """lm-eval's target; multiple choice: the gold option's index (a letter target such as
    CommonsenseQA's answerKey is looked up among the choices' continuations)."""
    target = sample["target"]
    if output_type == "multiple_choice" and not isinstance(target, int) and not str(target).strip().isdigit():
        continuations = [str(args[1]).strip() for args in sample.get("arguments") or [] if len(args) > 1]
        if str(target).strip() in continuations:
            return str(continuations.index(str(target).strip()))
    return str(target)


def leaf_tasks(task: str, group_subtasks: dict[str, list[str]]) -> list[str]:
    """The tasks lm-eval logs samples for: a group (e.g. ``minerva_math``) expands to its subtasks."""
    subtasks = group_subtasks.get(task) or []
    return [leaf for sub in subtasks for leaf in leaf_tasks(sub, group_subtasks)] if subtasks else [task]


def _correct(value: Any) -> bool | None:
    """Full credit (>= 1) on a per-sample metric; None when it was not computed (NaN)."""
    value = float(value)
    return None if math.isnan(value) else bool(value >= 1.0)


def samples_frame(
    results: dict[str, Any],
    task_domains: dict[str, str],
    scoring: dict[str, dict],
    ckpt: str,
    step: int,
    *,
    revision_sha: str | None = None,
    local_tasks: set[str] | frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per (domain, test sample) from lm-eval's logged samples (``results["samples"]``).

    ``correct`` is full credit (value >= 1) on the task's scoring metric under its
    scoring filter: ``evaluation.scoring.<task>`` or the first metric and filter lm-eval logged;
    null where the metric is NaN (code not executed). ``sample_id`` comes from the logged doc;
    local tasks must carry one, built-in tasks fall back to lm-eval's doc index.
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
                raise ValueError(
                    f"evaluation.scoring.{task}.metric '{metric}' not among {chosen[0]['metrics']} for task '{leaf}'"
                )
            keys[leaf] = f"{metric},{filter_key}"
            output_type = results["configs"][leaf]["output_type"]
            for sample in sorted(chosen, key=lambda s: s["doc_id"]):
                doc = sample["doc"] if isinstance(sample["doc"], dict) else {}
                if "sample_id" in doc:
                    sample_id = str(doc["sample_id"])
                elif leaf in local_tasks or task in local_tasks:
                    raise ValueError(
                        f"task '{leaf}' (domain '{domain}'): a logged doc has no 'sample_id' (doc_id {sample['doc_id']})"
                    )
                else:  # an lm-eval built-in task reading its own copy of the benchmark: not joinable
                    sample_id = f"{leaf}:{sample['doc_id']}" if len(leaves) > 1 else str(sample["doc_id"])
                rows.append(
                    {
                        "ckpt": ckpt,
                        "step": step,
                        "revision_sha": revision_sha,
                        "domain": domain,
                        "sample_id": sample_id,
                        "correct": _correct(sample[metric]),
                        "response": _response_text(sample, output_type),
                        "target": _target_text(sample, output_type),
                    }
                )
    frame = pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
    has_null = frame["correct"].isna().any()
    frame = frame.astype(
        {
            "ckpt": "string",
            "step": "int64",
            "revision_sha": "string",
            "domain": "string",
            "sample_id": "string",
            "correct": "boolean" if has_null else "bool",
            "response": "string",
            "target": "string",
        }
    )
    return frame, keys


def _adapter_groups(evaluation: dict, task_of: dict[str, str], adapters: dict[str, Path]) -> list[tuple[Path | None, list[str]]]:
    """(adapter or None, tasks) per lm-eval call: domains sharing an adapter share a call."""
    if evaluation["tuning"] != "lora":
        if adapters:
            raise ValueError(f"adapters given for {sorted(adapters)} but evaluation.tuning is '{evaluation['tuning']}'")
        return [(None, list(task_of.values()))]
    missing = [d for d in task_of if d not in adapters]
    if missing:
        raise ValueError(f"evaluation.tuning is 'lora' but no adapter was given for domain(s) {missing}")
    unknown = sorted(set(adapters) - set(task_of))
    if unknown:
        raise ValueError(f"adapters given for domain(s) {unknown} not in config 'domains' {sorted(task_of)}")
    groups: dict[Path, list[str]] = {}
    for domain, task in task_of.items():
        adapter = Path(adapters[domain])
        if not (adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"domain '{domain}': LoRA adapter {adapter} has no adapter_config.json (rule tune)")
        groups.setdefault(adapter, []).append(task)
    return list(groups.items())


MERGED_KEYS = ("results", "configs", "samples", "group_subtasks", "versions", "n-shot", "higher_is_better", "n-samples")


def _merge_results(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """lm-eval results of several calls (disjoint tasks) as one results dict."""
    merged = dict(calls[0])
    for key in MERGED_KEYS:
        merged[key] = {k: v for call in calls for k, v in (call.get(key) or {}).items()}
    return merged


def run_evaluations(
    cfg: dict,
    checkpoint_dirs: list[Path],
    ckpts: list[str],
    out_dirs: list[Path],
    *,
    test_files: dict[str, Path | str] | None = None,
    tasks_dir: Path | str = DEFAULT_TASKS_DIR,
    threads: int | None = None,
) -> None:
    """:func:`run_evaluation` for each checkpoint in turn, in one process (the mini study: see
    :func:`grokpath.traces.run_traces_checkpoints`)."""
    for checkpoint_dir, ckpt, out_dir in zip(checkpoint_dirs, ckpts, out_dirs, strict=True):
        run_evaluation(cfg, checkpoint_dir, ckpt, out_dir, test_files=test_files, tasks_dir=tasks_dir, threads=threads)


def run_evaluation(
    cfg: dict,
    checkpoint_dir: Path | str,
    ckpt: str,
    out_dir: Path | str,
    *,
    test_files: dict[str, Path | str] | None = None,
    adapters: dict[str, Path | str] | None = None,
    tasks_dir: Path | str = DEFAULT_TASKS_DIR,
    threads: int | None = None,
) -> pd.DataFrame:
    """Evaluate one checkpoint on every domain's test task.

    ``cfg``: the ``evaluation``, ``domains`` and (optional) ``checkpoints`` sections. ``test_files``: domain ->
    test JSONL (needed for local tasks). ``adapters``: domain -> LoRA adapter dir (``evaluation.tuning: lora``);
    one lm-eval call per distinct adapter, one call in all without tuning. Writes ``<out_dir>/lm_eval.json``
    (lm-eval's results without the per-sample log) and ``<out_dir>/samples.parquet``.
    """
    evaluation, domains = cfg["evaluation"], cfg["domains"]
    checkpoints = cfg.get("checkpoints") or {}
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    test_files = {d: Path(p) for d, p in (test_files or {}).items()}
    unknown = sorted(set(test_files) - set(domains))
    if unknown:
        raise ValueError(f"test files given for domain(s) {unknown} not in config 'domains' {sorted(domains)}")

    # -- cheap checks first: task names, data files, checkpoint, adapters
    task_of = domain_tasks(domains)
    task_domains = {task: domain for domain, task in task_of.items()}
    local_tasks = {task: y for task in task_domains if (y := local_task_yaml(tasks_dir, task)) is not None}
    check_test_files(local_tasks, {t: test_files[d] for t, d in task_domains.items() if d in test_files})
    if not (checkpoint_dir / "config.json").is_file():
        raise FileNotFoundError(f"checkpoint '{ckpt}': {checkpoint_dir} is not a saved HF model (no config.json)")
    step = checkpoint_step(checkpoints, ckpt)
    revision_sha = read_provenance(checkpoint_dir).get("revision_sha")
    groups = _adapter_groups(evaluation, task_of, {d: Path(p) for d, p in (adapters or {}).items()})
    for task, task_yaml in local_tasks.items():
        if task_metadata(task_yaml).get("executes_code") and not evaluation["allow_code_execution"]:
            log.warning(
                "domain '%s' (task %s): generations are saved but not executed, so pass@1 and `correct` are null. "
                "To score it, set evaluation.allow_code_execution: true (programs then run in grokpath.sandbox, "
                "a best-effort sandbox: use a machine you can afford to lose)",
                task_domains[task],
                task,
            )

    out_dir.mkdir(parents=True, exist_ok=True)
    throwaway_cache = evaluation["datasets_cache"] is None
    for stale in out_dir.glob(".hf_datasets.*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    cache_dir = (
        Path(tempfile.mkdtemp(prefix=".hf_datasets.", dir=out_dir)) if throwaway_cache else Path(evaluation["datasets_cache"])
    )
    calls = []
    try:
        with _offline_env(cache_dir, evaluation):
            rendered = render_local_tasks(
                evaluation,
                local_tasks,
                {t: test_files[task_domains[t]] for t in local_tasks},
                out_dir / "tasks",
                cache_dir,
            )
            for adapter, tasks in groups:
                calls.append(
                    _call_lm_eval(
                        evaluation,
                        checkpoints,
                        checkpoint_dir,
                        tasks,
                        rendered,
                        adapter=adapter,
                        include_defaults=any(t not in local_tasks for t in tasks),
                        threads=threads,
                    )
                )
    finally:
        if throwaway_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)
    results = _merge_results(calls)

    frame, keys = samples_frame(
        results, task_domains, evaluation["scoring"], ckpt, step, revision_sha=revision_sha, local_tasks=set(local_tasks)
    )
    for task, domain in task_domains.items():
        in_domain = frame["domain"] == domain
        scored = frame.loc[in_domain, "correct"].dropna()
        accuracy = float(scored.astype(float).mean()) if len(scored) else math.nan
        log.info(
            "%s %s (%s): accuracy %.4f over %d samples (%d scored)",
            ckpt,
            domain,
            task,
            accuracy,
            int(in_domain.sum()),
            len(scored),
        )
        key = keys.get(task)  # a group's aggregate may weigh subtasks differently: compare leaves only
        reported = results["results"].get(task, {}).get(key) if key else None
        if isinstance(reported, (int, float)) and len(scored) and abs(float(reported) - accuracy) > 1e-9:
            log.warning(
                "task '%s': lm-eval's %s = %s differs from mean(correct) = %s (metric is not 0/1 per sample)",
                task,
                key,
                reported,
                accuracy,
            )

    summary = {k: v for k, v in results.items() if k != "samples"}
    adapter_of = {task_domains[t]: (str(a) if a else None) for a, tasks in groups for t in tasks}
    summary["grokpath"] = {
        "ckpt": ckpt,
        "step": step,
        "revision_sha": revision_sha,
        "checkpoint_dir": str(checkpoint_dir),
        "task_of_domain": task_of,
        "adapter_of_domain": adapter_of,
        "scoring_key": keys,
        "calls": [{"adapter": str(a) if a else None, "tasks": t, "config": c.get("config")} for (a, t), c in zip(groups, calls)],
    }
    write_json(summary, out_dir / "lm_eval.json")
    write_frame(
        frame,
        out_dir / "samples.parquet",
        metadata={"ckpt": ckpt, "step": step, "revision_sha": revision_sha, "scoring_key": keys},
    )
    return frame


def _call_lm_eval(
    evaluation: dict,
    checkpoints: dict,
    model_dir: Path,
    tasks: list[str],
    include_path: Path,
    *,
    adapter: Path | None,
    include_defaults: bool,
    threads: int | None,
) -> dict[str, Any]:
    """One lm-eval call (one model, optionally with one adapter); imports here so the offline environment is set first."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    use_threads(threads)
    task_manager = TaskManager(include_path=str(include_path), include_defaults=include_defaults)
    missing = [t for t in tasks if t not in task_manager.all_tasks]
    if missing:
        raise ValueError(f"lm-eval task(s) {missing} are neither in {include_path} nor lm-eval built-ins (domains.<d>.task)")
    started = time.perf_counter()
    results = simple_evaluate(
        model="hf",
        model_args=model_args(evaluation, checkpoints, model_dir, adapter),
        tasks=tasks,
        batch_size=evaluation["batch_size"],
        device=resolve_device(evaluation["device"], "evaluation.device"),
        limit=evaluation["limit"],
        log_samples=True,
        task_manager=task_manager,
        confirm_run_unsafe_code=evaluation["allow_code_execution"],
        bootstrap_iters=evaluation["bootstrap_iters"],
    )
    log.info(
        "lm-eval on %s%s: %d task(s) in %.1f s",
        model_dir,
        f" + adapter {adapter}" if adapter else "",
        len(tasks),
        time.perf_counter() - started,
    )
    return results
