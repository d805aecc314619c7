# reproduces results/synthheads-cpu-position (run from the repository root)
mkdir -p runs/synthheads-cpu-position && papermill nbs/10_train.ipynb runs/synthheads-cpu-position/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-position -y '{"overrides": {"stage0_position": 1.0, "stage1": {"position": 1.0}, "stage2": {"visibility": null}}}'
