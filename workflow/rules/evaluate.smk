# evaluate stage: test accuracy per checkpoint with lm-eval, one job per checkpoint for
# all domains (the mini study: one job for all checkpoints, ONE_JOB_PER_STUDY); with
# evaluation.tuning: lora, one LoRA adapter per (checkpoint, tuning set) first (rule tune),
# and each domain is evaluated with its own set's adapter.
import os

from grokpath.data import split_path
from grokpath.evaluation import domain_tasks, local_task_yaml, task_yaml_files
from grokpath.tuning import tuning_data_path, tuning_sets

EVAL_TASKS_DIR = os.path.normpath(os.path.join(workflow.current_basedir, "..", "tasks"))
EVAL_TASKS = domain_tasks(config["domains"])
# domains whose task ships in workflow/tasks (the generic grokpath_exact_match included) read their
# test JSONL; others are lm-eval built-ins
EVAL_LOCAL_YAMLS = {domain: local_task_yaml(EVAL_TASKS_DIR, task) for domain, task in EVAL_TASKS.items()}
EVAL_TESTS = {domain: split_path(config["domains"], domain, "test") for domain, y in EVAL_LOCAL_YAMLS.items() if y is not None}
EVAL_TASK_YAMLS = sorted(  # the local tasks' YAMLs, the templates they include, the modules they name
    {str(f) for d in EVAL_TESTS for f in task_yaml_files(EVAL_LOCAL_YAMLS[d])}
)
TUNING = config["evaluation"]["tuning"]
TUNING_SETS = tuning_sets(config["evaluation"], config["domains"]) if TUNING == "lora" else {}
if TUNING_SETS and config["data"]["source"] != "jsonl":  # the data stage makes the sets: names must agree
    for _domain, _set in TUNING_SETS.items():
        if _set not in config["data"]["tuning"]["sets"]:
            raise WorkflowError(f"evaluation.lora.sets.{_domain} is '{_set}', which data.tuning.sets does not define")


if TUNING == "lora":

    rule tune:
        input:
            checkpoint_dir=checkpoint_dir,
            data_file=lambda wildcards: str(tuning_data_path(config["evaluation"], wildcards.set)),
        output:
            out_dir=directory("results/tuned/{ckpt}/{set}"),
        params:
            call="grokpath.tuning:tune_lora",
            cfg=cfg("evaluation", "study", "checkpoints"),
            set_name="{set}",
        wildcard_constraints:
            set="|".join(sorted(set(TUNING_SETS.values()))),
        group: "ckpt_{ckpt}"  # one SLURM allocation per checkpoint (profiles/slurm group-components)
        threads: res("tune", "threads")
        resources:
            mem_mb=res("tune", "mem_mb"),
            runtime=res("tune", "runtime"),
            gpu=res("tune", "gpu"),
        log:
            "results/logs/tune/{ckpt}/{set}.log",
        benchmark:
            "results/benchmarks/tune/{ckpt}/{set}.tsv"
        conda: "../../envs/eval.yaml"
        script:
            "../scripts/step.py"


if ONE_JOB_PER_STUDY and TUNING != "lora":

    rule evaluate:
        input:
            checkpoint_dirs=checkpoint_dirs(),
            tests=list(EVAL_TESTS.values()),
            task_yamls=EVAL_TASK_YAMLS,
        output:
            samples=expand("results/eval/{ckpt}/samples.parquet", ckpt=CKPTS),
            lm_eval=expand("results/eval/{ckpt}/lm_eval.json", ckpt=CKPTS),
        params:
            call="grokpath.evaluation:run_evaluations",
            cfg=cfg("evaluation", "domains", "checkpoints"),
            test_files=lambda wildcards: EVAL_TESTS,
            tasks_dir=lambda wildcards: EVAL_TASKS_DIR,
            ckpts=CKPTS,
            out_dirs=[f"results/eval/{ckpt}" for ckpt in CKPTS],
        threads: res("evaluate", "threads")
        priority: CRITICAL_PATH - 20  # after traces: as pretraining ends, the circuits sweep (the tail's longest job) takes the other core
        resources:
            mem_mb=res("evaluate", "mem_mb"),
            runtime=res("evaluate", "runtime"),
            gpu=res("evaluate", "gpu"),
        log:
            "results/logs/evaluate/all.log",
        benchmark:
            "results/benchmarks/evaluate/all.tsv"
        conda: "../../envs/eval.yaml"
        script:
            "../scripts/step.py"

else:

    rule evaluate:
        input:
            checkpoint_dir=checkpoint_dir,
            adapter_dirs=lambda wildcards: sorted(set(eval_adapters(wildcards, TUNING_SETS).values())),
            tests=list(EVAL_TESTS.values()),
            task_yamls=EVAL_TASK_YAMLS,
        output:
            samples="results/eval/{ckpt}/samples.parquet",
            lm_eval="results/eval/{ckpt}/lm_eval.json",
        params:
            call="grokpath.evaluation:run_evaluation",
            cfg=cfg("evaluation", "domains", "checkpoints"),
            test_files=lambda wildcards: EVAL_TESTS,
            adapters=lambda wildcards: eval_adapters(wildcards, TUNING_SETS),
            tasks_dir=lambda wildcards: EVAL_TASKS_DIR,  # the shipped task YAMLs, rendered per run
            out_dir=subpath(output.samples, parent=True),
        group: "ckpt_{ckpt}"  # one SLURM allocation per checkpoint (profiles/slurm group-components)
        threads: res("evaluate", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("evaluate", "mem_mb"),
            runtime=res("evaluate", "runtime"),
            gpu=res("evaluate", "gpu"),
        log:
            "results/logs/evaluate/{ckpt}.log",
        benchmark:
            "results/benchmarks/evaluate/{ckpt}.tsv"
        conda: "../../envs/eval.yaml"
        script:
            "../scripts/step.py"


ALL_TARGETS += expand("results/eval/{ckpt}/{name}", ckpt=CKPTS, name=["samples.parquet", "lm_eval.json"])
