# world stage (see Snakefile).
