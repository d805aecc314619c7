# reproduces results/synthheads-cpu-make-train-s2 (run from the repository root)
mkdir -p runs/synthheads-cpu-make-train-s2 && papermill nbs/10_train.ipynb runs/synthheads-cpu-make-train-s2/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 2 -p run_dir ../runs/synthheads-cpu-make-train-s2 -y '{"overrides": {"stage2": {"visibility": null}}}'
