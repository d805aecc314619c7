# reproduces results/synthheads-cpu-make-train-s1 (run from the repository root)
mkdir -p runs/synthheads-cpu-make-train-s1 && papermill nbs/10_train.ipynb runs/synthheads-cpu-make-train-s1/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 1 -p run_dir ../runs/synthheads-cpu-make-train-s1 -y '{"overrides": {"stage2": {"shape_tol": null, "shape_view": null}}}'
