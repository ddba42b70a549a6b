# metrics stage: paper A's per-sample metrics. One job per domain and metric reads every
# checkpoint's trace (or eval) files; a gather rule concatenates the domains.
from grokpath.data import split_path

METRIC_TABLES = ["memorization", "memorization_ablation", "pathways", "distances", "consistency", "onset", "groups"]
PATHWAY_SPLITS = list(dict.fromkeys(config["pathways"]["splits"] + [config["pathways"]["distance_split"]]))
CONSISTENCY_SPLITS = config["consistency"]["splits"]


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


ALL_TARGETS += expand("results/metrics/{table}.parquet", table=METRIC_TABLES + ["cross_distances"])
