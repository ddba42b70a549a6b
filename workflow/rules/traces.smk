# traces stage: fetch hub checkpoints (source hf), then one trace job per checkpoint
# that loads the model once and writes every (domain, split) file; the mini study's
# checkpoints all go through one job (ONE_JOB_PER_STUDY).
from grokpath.data import split_path

TRACE_FILES = expand("{domain}_{split}.parquet", domain=DOMAINS, split=SPLITS)
TOKEN_FILES = expand("{domain}_{split}.tokens.parquet", domain=DOMAINS, split=SPLITS)


if config["checkpoints"]["source"] == "hf":
    # checkpoints.hf.delete_weights_after_use: temp() lets Snakemake delete each checkpoint
    # once every job that reads it has finished.
    FETCHED = directory("results/checkpoints/{ckpt}")
    if config["checkpoints"]["hf"]["delete_weights_after_use"]:
        FETCHED = temp(FETCHED)

    rule fetch_checkpoint:
        output:
            out_dir=FETCHED,
        params:
            call="grokpath.checkpoints:fetch_hf_checkpoint",
            checkpoints=section("checkpoints"),
        threads: res("fetch_checkpoint", "threads")
        resources:
            mem_mb=res("fetch_checkpoint", "mem_mb"),
            runtime=res("fetch_checkpoint", "runtime"),
        log:
            "results/logs/fetch_checkpoint/{ckpt}.log",
        localrule: True  # login nodes have the network; compute nodes often do not
        conda: "../../envs/torch.yaml"
        script:
            "../scripts/step.py"


if config["checkpoints"]["source"] == "olmo_core":
    # OLMo-core's own conversion of each step<N>/ checkpoint (model_and_optim/ + config.json) to HF format.
    from grokpath.olmo_core import CHECKPOINT_FILES, EXPERIMENT_CONFIG, checkpoint_source_dir

    rule convert_checkpoint:
        input:
            source=lambda wildcards: [
                str(checkpoint_source_dir(config["checkpoints"], wildcards.ckpt) / name)
                for name in (*CHECKPOINT_FILES, EXPERIMENT_CONFIG)
            ],
        output:
            out_dir=directory("results/checkpoints/{ckpt}"),
        params:
            call="grokpath.olmo_core:convert_checkpoint",
            checkpoints=section("checkpoints"),
        threads: res("convert_checkpoint", "threads")
        resources:
            mem_mb=res("convert_checkpoint", "mem_mb"),
            runtime=res("convert_checkpoint", "runtime"),
        log:
            "results/logs/convert_checkpoint/{ckpt}.log",
        conda: "../../envs/torch.yaml"
        script:
            "../scripts/step.py"


if ONE_JOB_PER_STUDY:

    rule traces:
        input:
            checkpoint_dirs=checkpoint_dirs(),
            data=[split_path(config["domains"], d, s) for d in DOMAINS for s in SPLITS],
        output:
            traces=expand("results/traces/{ckpt}/{name}", ckpt=CKPTS, name=TRACE_FILES),
            tokens=expand("results/traces/{ckpt}/{name}", ckpt=CKPTS, name=TOKEN_FILES) if config["traces"]["per_token"] else [],
            router_weights=expand("results/traces/{ckpt}/router_weights.npy", ckpt=CKPTS),
        params:
            call="grokpath.traces:run_traces_checkpoints",
            cfg=cfg("checkpoints", "domains", "traces"),
            ckpts=CKPTS,
            out_dirs=[f"results/traces/{ckpt}" for ckpt in CKPTS],
        threads: res("traces", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("traces", "mem_mb"),
            runtime=res("traces", "runtime"),
            gpu=res("traces", "gpu"),
        log:
            "results/logs/traces/all.log",
        benchmark:
            "results/benchmarks/traces/all.tsv"
        conda: "../../envs/torch.yaml"
        script:
            "../scripts/step.py"

else:

    rule traces:
        input:
            checkpoint_dir=checkpoint_dir,
            data=[split_path(config["domains"], d, s) for d in DOMAINS for s in SPLITS],
        output:
            traces=[f"results/traces/{{ckpt}}/{name}" for name in TRACE_FILES],
            tokens=[f"results/traces/{{ckpt}}/{name}" for name in TOKEN_FILES] if config["traces"]["per_token"] else [],
            router_weights="results/traces/{ckpt}/router_weights.npy",
        params:
            call="grokpath.traces:run_traces",
            cfg=cfg("checkpoints", "domains", "traces"),
            out_dir=subpath(output.router_weights, parent=True),
        group: "ckpt_{ckpt}"  # one SLURM allocation per checkpoint (profiles/slurm group-components)
        threads: res("traces", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("traces", "mem_mb"),
            runtime=res("traces", "runtime"),
            gpu=res("traces", "gpu"),
        log:
            "results/logs/traces/{ckpt}.log",
        benchmark:
            "results/benchmarks/traces/{ckpt}.tsv"
        conda: "../../envs/torch.yaml"
        script:
            "../scripts/step.py"


ALL_TARGETS += expand("results/traces/{ckpt}/{name}", ckpt=CKPTS, name=TRACE_FILES + ["router_weights.npy"])
if config["traces"]["per_token"]:
    ALL_TARGETS += expand("results/traces/{ckpt}/{name}", ckpt=CKPTS, name=TOKEN_FILES)
