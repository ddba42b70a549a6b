# pretrain stage (see Snakefile).
