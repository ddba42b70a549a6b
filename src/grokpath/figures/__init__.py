"""Figures: functions take DataFrames and return matplotlib figures; :mod:`.common` saves them.

The figure lists of both papers live here (the workflow's rules and the tests import them;
importing this package loads no plotting library).
"""

# paper A (grokking in LLM pretraining): results/figures/paper_a/<name>.{png,pdf}, made by figures-a;
# fig08_theory comes from the theory rule
PAPER_A_FIGURES = [
    "fig01_memorized_vs_accuracy",
    "fig02_group_pairs",
    "fig04_distance_loss",
    "fig05_per_layer_distance",
    "fig06_consistency",
    "fig07_regression",
    "fig09_threshold_ablation",
    "fig10_epsilon_ablation",
    "fig11_delta_ablation",
    "fig12_cross_domain",
    "fig13_entropy_vs_distance",
]

# paper B (circuits competition): results/figures/paper_b/<name>.{png,pdf} -> report subcategory
PAPER_B_FIGURES = {
    "fig01_phase_diagram": "phase diagram",
    "fig02_example_runs": "example runs",
    "fig03_val_acc_vs_data": "val acc vs D",
    "fig04_capacity": "capacity",
    "fig06_double_descent": "double descent",
    "fig07_double_descent_square": "double descent",
    "fig08_emergence": "emergence",
    "fig09_param_norm": "parameter norm",
    "fig10_split_ffn": "emergence",
}
