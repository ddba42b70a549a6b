# evaluate stage (see Snakefile).
