# metrics stage (see Snakefile).
