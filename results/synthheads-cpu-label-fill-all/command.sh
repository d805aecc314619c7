# reproduces results/synthheads-cpu-label-fill-all (run from the repository root)
papermill nbs/10_train.ipynb out.ipynb -p preset cpu -p seed 0 -y '{"overrides": {"stage2": {"label_shape_tol": 0.1, "label_shape_view": 0.4, "label_shape_fill": "all", "shape_tol": 0.1, "shape_view": 0.4}}}'
