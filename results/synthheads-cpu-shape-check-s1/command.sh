# reproduces results/synthheads-cpu-shape-check-s1 (run from the repository root)
papermill nbs/10_train.ipynb out.ipynb -p preset cpu -p seed 1 -y '{"overrides": {"stage2": {"shape_tol": 0.1, "shape_view": 0.4}}}'
