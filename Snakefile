# grokpath: grokking in MoE pretraining (Li, Fan & Zhou 2025) and the circuits
# competition (Huang et al. 2024). Thin by design: config, validation, includes, `all`.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")


# A study config given with --configfile stands alone: the schema fills every default it leaves
# out, and the mini study's config/config.yaml applies only when no --configfile is given
# (--config key=value alone still overrides the mini study). Add config/config.yaml first to
# overlay on the mini study: --configfile config/config.yaml config/smoke.yaml
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# grokpath's validator fills the schema's defaults and names the bad key in full
# (e.g. "pathways.threshhold"); snakemake's own validate names only the leaf.
from grokpath.config import ConfigError, load_schema, validate as validate_config

try:
    validate_config(config, load_schema(workflow.source_path("workflow/schemas/config.schema.yaml")))
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None


include: "workflow/rules/common.smk"
include: "workflow/rules/world.smk"
include: "workflow/rules/pretrain.smk"
if config["data"]["source"] != "jsonl":  # the data stage of a real study (data.source hub | local)

    include: "workflow/rules/data.smk"


include: "workflow/rules/traces.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/circuits.smk"


rule all:
    input:
        ALL_TARGETS,
    default_target: True


onsuccess:
    from grokpath.summary import run_summary

    print(run_summary("results", config))
