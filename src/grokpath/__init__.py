"""grokpath: grokking in MoE pretraining, traced through routing pathways."""

__version__ = "0.1.0"
