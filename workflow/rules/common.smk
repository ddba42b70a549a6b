# Shared helpers: the checkpoint / domain / split lists and config hand-over.
# Everything here derives from the validated config; no settings live in rules.
import json
import os
import shlex
import sys

from grokpath.checkpoints import checkpoint_names
from grokpath.data import SPLITS

envvars:
    "PATH",


# Rules call the `grokpath` CLI installed beside this interpreter, also when
# snakemake is started as .venv/bin/snakemake without activating the venv.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

CKPTS = checkpoint_names(config)
DOMAINS = list(config["domains"])
ALL_TARGETS = []


wildcard_constraints:
    ckpt="[^/]+",
    domain="[^/_]+",
    split="train|validation|test",


def cfg(*sections):
    """The named config sections as one JSON object, for a rule's --cfg.

    Returned as a function so Snakemake does not read `{...}` in the JSON as wildcards.
    """
    text = json.dumps({name: config[name] for name in sections}, sort_keys=True)
    return lambda wildcards: text


def res(rule_name, key):
    """A rule's resource from config.resources, falling back to resources.default."""
    table = config["resources"]
    return table.get(rule_name, {}).get(key, table.get("default", {}).get(key))


def checkpoint_dir(wildcards):
    """Directory of checkpoint {ckpt} for the configured source (mini, local or hf)."""
    from grokpath.checkpoints import checkpoint_dir as source_checkpoint_dir

    return str(source_checkpoint_dir(config, wildcards.ckpt))


def domain_args(flag, paths):
    """`--flag domain=path` for each domain, shell-quoted."""
    return " ".join(f"{flag} {shlex.quote(f'{domain}={path}')}" for domain, path in paths.items())


def eval_adapters(wildcards, tuning_sets):
    """domain -> its tuning set's adapter of checkpoint {ckpt} (empty without tuning)."""
    return {domain: f"results/tuned/{wildcards.ckpt}/{name}" for domain, name in tuning_sets.items()}


def domain_traces(splits):
    """Every checkpoint's trace files of domain {domain} for ``splits``."""
    return lambda wildcards: expand(
        "results/traces/{ckpt}/{domain}_{split}.parquet", ckpt=CKPTS, domain=wildcards.domain, split=splits
    )
