# reproduces results/synthheads-cpu-m60-v2 (run from the repository root)
mkdir -p runs/synthheads-cpu-m60-v2 && papermill nbs/10_train.ipynb runs/synthheads-cpu-m60-v2/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-m60-v2 -y '{"overrides": {"stage0_M": 60, "stage2": {"shape_tol": null, "shape_view": null}}}'
