# reproduces results/synthheads-cpu-merge-conf (run from the repository root)
mkdir -p runs/synthheads-cpu-merge-conf && papermill nbs/10_train.ipynb runs/synthheads-cpu-merge-conf/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-merge-conf -y '{"overrides": {"stage2": {"merge_conf": "label_rate", "shape_tol": null, "shape_view": null}}}'
