# data stage (data.source hub | local): each domain's train, validation and unfiltered test files
# and the LoRA tuning sets from their datasets, one manifest, then the Min-K%++ filter that writes
# every domain's test.jsonl with the last (or data.contamination.ckpt) checkpoint.
from types import SimpleNamespace

DATA = config["data"]
# the tuning sets the LoRA stage reads (evaluation.lora.sets: domain -> set), when it is on
DATA_TUNING_SETS = (
    sorted({config["evaluation"]["lora"]["sets"][d] for d in DOMAINS if d in config["evaluation"]["lora"]["sets"]})
    if config["evaluation"]["tuning"] == "lora"
    else []
)
CONTAMINATION_CKPT = DATA["contamination"]["ckpt"] or CKPTS[-1]

if DATA["source"] == "local" and not DATA["local_dir"]:
    raise WorkflowError("data.source is 'local' but data.local_dir is not set (`grokpath standin-data DIR` writes one)")
if "tuning" in DOMAINS:
    raise WorkflowError("domain name 'tuning' is reserved by the data stage (results/data/tuning/)")
for _domain in DOMAINS:
    if _domain not in DATA["domains"]:
        raise WorkflowError(f"data.domains.{_domain} is not configured: the data stage needs a source per domain and split")
for _set in DATA_TUNING_SETS:
    if _set not in DATA["tuning"]["sets"]:
        raise WorkflowError(f"evaluation.lora.sets names the set '{_set}', which data.tuning.sets does not define")


rule select_data:
    input:
        # a local tokenizer directory; when it is a checkpoint this workflow makes, it runs first
        tokenizer_dir=DATA["tokenizer"]["path"] or [],
    output:
        train="results/data/{domain}/train.jsonl",
        validation="results/data/{domain}/validation.jsonl",
        test="results/data/{domain}/test_unfiltered.jsonl",
        manifest_out="results/data/{domain}/manifest.parquet",
    params:
        call="grokpath.selection:select_domain",
        cfg=cfg("data"),
        out_dir=subpath(output.train, parent=True),
    threads: res("select_data", "threads")
    resources:
        mem_mb=res("select_data", "mem_mb"),
        runtime=res("select_data", "runtime"),
    log:
        "results/logs/select_data/{domain}.log",
    benchmark:
        "results/benchmarks/select_data/{domain}.tsv"
    localrule: True  # streams from the hub: runs where the network is
    conda: "../../envs/torch.yaml"
    script:
        "../scripts/step.py"


rule select_tuning:
    input:
        tokenizer_dir=DATA["tokenizer"]["path"] or [],
    output:
        out="results/data/tuning/{tuning_set}.jsonl",
        manifest_out="results/data/tuning/{tuning_set}.manifest.parquet",
    wildcard_constraints:
        tuning_set="[A-Za-z0-9-]+",
    params:
        call="grokpath.selection:select_tuning",
        cfg=cfg("data"),
        name="{tuning_set}",
    threads: res("select_data", "threads")
    resources:
        mem_mb=res("select_data", "mem_mb"),
        runtime=res("select_data", "runtime"),
    log:
        "results/logs/select_tuning/{tuning_set}.log",
    localrule: True
    conda: "../../envs/torch.yaml"
    script:
        "../scripts/step.py"


rule data_manifest:
    input:
        parts=expand("results/data/{domain}/manifest.parquet", domain=DOMAINS)
        + expand("results/data/tuning/{tuning_set}.manifest.parquet", tuning_set=DATA_TUNING_SETS),
    output:
        out="results/data/manifest.parquet",
    params:
        call="grokpath.selection:gather_manifest",
    log:
        "results/logs/data_manifest.log",
    localrule: True
    conda: "../../envs/torch.yaml"
    script:
        "../scripts/step.py"


rule contamination:
    input:
        checkpoint_dir=lambda wildcards: checkpoint_dir(SimpleNamespace(ckpt=CONTAMINATION_CKPT)),
        unfiltered=expand("results/data/{domain}/test_unfiltered.jsonl", domain=DOMAINS),
    output:
        filtered=expand("results/data/{domain}/test.jsonl", domain=DOMAINS),
        scores_out="results/data/contamination.parquet",
    params:
        call="grokpath.contamination:run_contamination",
        cfg=cfg("data", "checkpoints"),
        ckpt=CONTAMINATION_CKPT,
        tests=lambda wildcards, input, output: dict(zip(DOMAINS, zip(input.unfiltered, output.filtered))),
    threads: res("contamination", "threads")
    resources:
        mem_mb=res("contamination", "mem_mb"),
        runtime=res("contamination", "runtime"),
        gpu=res("contamination", "gpu"),
    log:
        "results/logs/contamination.log",
    benchmark:
        "results/benchmarks/contamination.tsv"
    conda: "../../envs/torch.yaml"
    script:
        "../scripts/step.py"


ALL_TARGETS += ["results/data/manifest.parquet", "results/data/contamination.parquet"]
ALL_TARGETS += expand("results/data/tuning/{tuning_set}.jsonl", tuning_set=DATA_TUNING_SETS)
