# evaluate stage: test accuracy per checkpoint with lm-eval, one job per checkpoint for
# all domains; with evaluation.tuning: lora each checkpoint is LoRA-tuned first (rule tune).
import os
import shlex

from grokpath.data import split_path
from grokpath.evaluation import domain_tasks, task_yaml_files

EVAL_TASKS_DIR = os.path.normpath(os.path.join(workflow.current_basedir, "..", "tasks"))
EVAL_TASKS = domain_tasks(config["domains"])
# domains whose task ships in workflow/tasks read their test JSONL; others are lm-eval built-ins
EVAL_TESTS = {
    domain: split_path(config["domains"], domain, "test")
    for domain, task in EVAL_TASKS.items()
    if os.path.isfile(os.path.join(EVAL_TASKS_DIR, f"{task}.yaml"))
}
EVAL_TASK_YAMLS = sorted(  # the local tasks' YAMLs and the templates they include
    {str(f) for d in EVAL_TESTS for f in task_yaml_files(os.path.join(EVAL_TASKS_DIR, f"{EVAL_TASKS[d]}.yaml"))}
)
LORA_DATA = config["evaluation"]["lora"]["data"]
TUNING = config["evaluation"]["tuning"]


def domain_args(flag, paths):
    """`--flag domain=path` for each domain, shell-quoted."""
    return " ".join(f"{flag} {shlex.quote(f'{domain}={path}')}" for domain, path in paths.items())


def eval_model_dir(wildcards):
    return f"results/tuned/{wildcards.ckpt}" if TUNING == "lora" else checkpoint_dir(wildcards)


if TUNING == "lora":

    rule tune:
        input:
            checkpoint=checkpoint_dir,
            data=list(LORA_DATA.values()),
        output:
            directory("results/tuned/{ckpt}"),
        params:
            cfg=cfg("evaluation", "study", "checkpoints"),
            data=domain_args("--data", LORA_DATA),
        group: "ckpt_{ckpt}"  # one SLURM allocation per checkpoint (profiles/slurm group-components)
        threads: res("tune", "threads")
        resources:
            mem_mb=res("tune", "mem_mb"),
            runtime=res("tune", "runtime"),
            gpu=res("tune", "gpu"),
        log:
            "results/logs/tune/{ckpt}.log",
        benchmark:
            "results/benchmarks/tune/{ckpt}.tsv"
        conda: "../../envs/eval.yaml"
        shell:
            "grokpath tune --cfg {params.cfg:q} --checkpoint {input.checkpoint:q} {params.data}"
            " --out {output:q} --threads {threads} --log {log:q}"


rule evaluate:
    input:
        model=eval_model_dir,
        tests=list(EVAL_TESTS.values()),
        task_yamls=EVAL_TASK_YAMLS,
    output:
        samples="results/eval/{ckpt}/samples.parquet",
        lm_eval="results/eval/{ckpt}/lm_eval.json",
    params:
        cfg=cfg("evaluation", "domains", "checkpoints"),
        tests=domain_args("--test", EVAL_TESTS),
        tasks_dir=EVAL_TASKS_DIR,
        out=subpath(output.samples, parent=True),
    group: "ckpt_{ckpt}"  # one SLURM allocation per checkpoint (profiles/slurm group-components)
    threads: res("evaluate", "threads")
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        gpu=res("evaluate", "gpu"),
    log:
        "results/logs/evaluate/{ckpt}.log",
    benchmark:
        "results/benchmarks/evaluate/{ckpt}.tsv"
    conda: "../../envs/eval.yaml"
    shell:
        "grokpath evaluate --cfg {params.cfg:q} --checkpoint {input.model:q} --ckpt {wildcards.ckpt:q}"
        " {params.tests} --tasks-dir {params.tasks_dir:q} --out {params.out:q} --threads {threads} --log {log:q}"


ALL_TARGETS += expand("results/eval/{ckpt}/{name}", ckpt=CKPTS, name=["samples.parquet", "lm_eval.json"])
