# traces stage (see Snakefile).
