# reproduces results/synthheads-cpu-visibility-s2 (run from the repository root)
mkdir -p runs/synthheads-cpu-visibility-s2 && papermill nbs/10_train.ipynb runs/synthheads-cpu-visibility-s2/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 2 -p run_dir ../runs/synthheads-cpu-visibility-s2 -y '{"overrides": {"stage2": {"shape_tol": null, "shape_view": null}}}'
