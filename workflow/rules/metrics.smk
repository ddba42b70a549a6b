# metrics stage: paper A's per-sample metrics. One job per domain and metric reads every
# checkpoint's trace (or eval) files; a gather rule concatenates the domains. The mini study
# runs the whole stage in one job (ONE_JOB_PER_STUDY), with the same files.
from grokpath.data import split_path
from grokpath.metrics import METRIC_TABLES, pathway_splits

PATHWAY_SPLITS = pathway_splits(config["pathways"])
CONSISTENCY_SPLITS = config["consistency"]["splits"]


if ONE_JOB_PER_STUDY:

    rule metrics:
        input:
            traces=expand(
                "results/traces/{ckpt}/{domain}_{split}.parquet",
                ckpt=CKPTS,
                domain=DOMAINS,
                split=list(dict.fromkeys(["train"] + PATHWAY_SPLITS + CONSISTENCY_SPLITS)),
            ),
            router_weights=expand("results/traces/{ckpt}/router_weights.npy", ckpt=CKPTS),
            eval_samples=expand("results/eval/{ckpt}/samples.parquet", ckpt=CKPTS),
            texts=[split_path(config["domains"], d, s) for d in DOMAINS for s in ("train", "test")],
        output:
            domain_tables=expand("results/metrics/domains/{domain}/{table}.parquet", domain=DOMAINS, table=METRIC_TABLES),
            tables=expand("results/metrics/{table}.parquet", table=METRIC_TABLES),
            cross_distances="results/metrics/cross_distances.parquet",
        params:
            call="grokpath.metrics:run_metrics_study",
            cfg=cfg("domains", "memorization", "pathways", "consistency", "onset", "matching"),
            trace_dirs=[f"results/traces/{ckpt}" for ckpt in CKPTS],
            metrics_dir=subpath(output.cross_distances, parent=True),
        threads: res("metrics", "threads")
        priority: CRITICAL_PATH
        resources:
            mem_mb=res("metrics", "mem_mb"),
            runtime=res("metrics", "runtime"),
        log:
            "results/logs/metrics/all.log",
        benchmark:
            "results/benchmarks/metrics/all.tsv"
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"

else:

    rule memorization:
        input:
            train_traces=domain_traces(["train"]),
        output:
            out="results/metrics/domains/{domain}/memorization.parquet",
            ablation_out="results/metrics/domains/{domain}/memorization_ablation.parquet",
        params:
            call="grokpath.metrics:run_memorization",
            cfg=cfg("memorization"),
        threads: res("memorization", "threads")
        resources:
            mem_mb=res("memorization", "mem_mb"),
            runtime=res("memorization", "runtime"),
        log:
            "results/logs/memorization/{domain}.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule pathways:
        input:
            traces=domain_traces(PATHWAY_SPLITS),
            memorization_path="results/metrics/domains/{domain}/memorization.parquet",
        output:
            pathways_out="results/metrics/domains/{domain}/pathways.parquet",
            distances_out="results/metrics/domains/{domain}/distances.parquet",
        params:
            call="grokpath.metrics:run_pathways",
            cfg=cfg("pathways"),
        threads: res("pathways", "threads")
        resources:
            mem_mb=res("pathways", "mem_mb"),
            runtime=res("pathways", "runtime"),
        log:
            "results/logs/pathways/{domain}.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule cross_distances:
        input:
            pathway_files=expand("results/metrics/domains/{domain}/pathways.parquet", domain=DOMAINS),
        output:
            out="results/metrics/cross_distances.parquet",
        params:
            call="grokpath.metrics:run_cross_distances",
            cfg=cfg("pathways"),
        threads: res("cross_distances", "threads")
        resources:
            mem_mb=res("cross_distances", "mem_mb"),
            runtime=res("cross_distances", "runtime"),
        log:
            "results/logs/cross_distances/all.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule consistency:
        input:
            traces=domain_traces(CONSISTENCY_SPLITS),
            router_weights=expand("results/traces/{ckpt}/router_weights.npy", ckpt=CKPTS),
        output:
            out="results/metrics/domains/{domain}/consistency.parquet",
        params:
            call="grokpath.metrics:run_consistency",
            cfg=cfg("consistency"),
        threads: res("consistency", "threads")
        resources:
            mem_mb=res("consistency", "mem_mb"),
            runtime=res("consistency", "runtime"),
        log:
            "results/logs/consistency/{domain}.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule onset:
        input:
            eval_samples=expand("results/eval/{ckpt}/samples.parquet", ckpt=CKPTS),
        output:
            out="results/metrics/domains/{domain}/onset.parquet",
        params:
            call="grokpath.metrics:run_onset",
            cfg=cfg("onset"),
        threads: res("onset", "threads")
        resources:
            mem_mb=res("onset", "mem_mb"),
            runtime=res("onset", "runtime"),
        log:
            "results/logs/onset/{domain}.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule groups:
        input:
            memorization_path="results/metrics/domains/{domain}/memorization.parquet",
            onset_path="results/metrics/domains/{domain}/onset.parquet",
            train_texts=lambda wildcards: split_path(config["domains"], wildcards.domain, "train"),
            test_texts=lambda wildcards: split_path(config["domains"], wildcards.domain, "test"),
        output:
            out="results/metrics/domains/{domain}/groups.parquet",
        params:
            call="grokpath.metrics:run_groups",
            cfg=cfg("matching"),
        threads: res("groups", "threads")
        resources:
            mem_mb=res("groups", "mem_mb"),
            runtime=res("groups", "runtime"),
        log:
            "results/logs/groups/{domain}.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


    rule metrics_gather:
        input:
            inputs=lambda wildcards: expand("results/metrics/domains/{domain}/{table}.parquet", domain=DOMAINS, table=wildcards.table),
        output:
            out="results/metrics/{table}.parquet",
        wildcard_constraints:
            table="|".join(METRIC_TABLES),
        params:
            call="grokpath.metrics:gather",
        threads: res("metrics_gather", "threads")
        resources:
            mem_mb=res("metrics_gather", "mem_mb"),
            runtime=res("metrics_gather", "runtime"),
        log:
            "results/logs/metrics_gather/{table}.log",
        conda: "../../envs/plots.yaml"
        script:
            "../scripts/step.py"


ALL_TARGETS += expand("results/metrics/{table}.parquet", table=[*METRIC_TABLES, "cross_distances"])
