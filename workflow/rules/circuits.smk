# circuits stage (see Snakefile).
