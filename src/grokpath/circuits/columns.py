"""Column names shared by paper B's tables (run files, regimes.parquet) and its figures.

Kept free of imports so that plotting code can name a run without loading the metric code.
"""

# the columns that identify one trained model: its cell (task, size, data) and its seed
RUN_KEYS = ["task", "d_h", "n_layers", "split_ffn", "n_sub", "n_train", "seed"]
