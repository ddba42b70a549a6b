# grokpath: grokking in MoE pretraining (Li, Fan & Zhou 2025) and the circuits
# competition (Huang et al. 2024). Thin by design: config, validation, includes, `all`.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"
report: "workflow/report/workflow.rst"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


include: "workflow/rules/common.smk"
include: "workflow/rules/world.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/traces.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/circuits.smk"


rule all:
    input:
        ALL_TARGETS,
    default_target: True
