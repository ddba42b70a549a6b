# Shared helpers: the checkpoint / domain / split lists and config hand-over.
# Everything here derives from the validated config; no settings live in rules.
# Each step runs workflow/scripts/step.py, which calls the library function named in
# params.call with the rule's wildcards, named inputs, outputs and params (grokpath.step).
from grokpath.checkpoints import checkpoint_names
from grokpath.config import load_schema
from grokpath.data import SPLITS

CKPTS = checkpoint_names(config)
DOMAINS = list(config["domains"])
ALL_TARGETS = []


wildcard_constraints:
    ckpt="[^/]+",
    domain="[^/_]+",
    split="train|validation|test",


def cfg(*sections):
    """The named config sections as one dict, for a rule's params.cfg.

    Returned as a function so Snakemake does not read `{...}` in config strings as wildcards.
    """
    value = {name: config[name] for name in sections}
    return lambda wildcards: value


def section(name):
    """One config section, for a library function that takes it whole (e.g. circuits)."""
    return lambda wildcards: config[name]


SCHEMA_RESOURCES = load_schema()["properties"]["resources"]["default"]


def res(rule_name, key):
    """A rule's resource from config.resources, falling back to its default row, then to the schema's."""
    table = config["resources"]
    default = table.get("default") or SCHEMA_RESOURCES["default"]
    return table.get(rule_name, {}).get(key, default.get(key))


def checkpoint_dir(wildcards):
    """Directory of checkpoint {ckpt} for the configured source (mini, local or hf)."""
    from grokpath.checkpoints import checkpoint_dir as source_checkpoint_dir

    return str(source_checkpoint_dir(config, wildcards.ckpt))


def checkpoint_dirs():
    """Every checkpoint's directory, in CKPTS order."""
    from grokpath.checkpoints import checkpoint_dir as source_checkpoint_dir

    return [str(source_checkpoint_dir(config, ckpt)) for ckpt in CKPTS]


# The mini study's checkpoints all come from the one pretrain job, at once: one trace job and one
# evaluation job read them all (a job per tiny checkpoint spends most of its time importing torch).
# Its metric jobs are as small: one job runs the metrics stage too.
ONE_JOB_PER_STUDY = config["checkpoints"]["source"] == "mini"

# Paper A's chain of jobs, world to figures: when a core frees, Snakemake gives it to the
# highest priority among the ready jobs, so paper B's independent jobs fill the idle cores.
CRITICAL_PATH = 50


def eval_adapters(wildcards, tuning_sets):
    """domain -> its tuning set's adapter of checkpoint {ckpt} (empty without tuning)."""
    return {domain: f"results/tuned/{wildcards.ckpt}/{name}" for domain, name in tuning_sets.items()}


def domain_traces(splits):
    """Every checkpoint's trace files of domain {domain} for ``splits``."""
    return lambda wildcards: expand(
        "results/traces/{ckpt}/{domain}_{split}.parquet", ckpt=CKPTS, domain=wildcards.domain, split=splits
    )
