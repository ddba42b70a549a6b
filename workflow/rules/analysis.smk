# analysis stage (see Snakefile).
