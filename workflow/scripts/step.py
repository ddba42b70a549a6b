# The one script every rule runs: calls the rule's params.call with the rule's names
# (see grokpath.step). `snakemake` is the job object Snakemake injects.
import sys

from grokpath.step import run_snakemake_job

sys.exit(run_snakemake_job(snakemake))  # noqa: F821
