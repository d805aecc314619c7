# reproduces results/synthheads-cpu-aliked-s2 (run from the repository root)
mkdir -p runs/synthheads-cpu-aliked-s2 && papermill nbs/10_train.ipynb runs/synthheads-cpu-aliked-s2/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 2 -p run_dir ../runs/synthheads-cpu-aliked-s2 -y '{"overrides": {"initializer": "aliked", "initializer_args": {"upsample": 1.5, "conf_thresh": 0.1}}}'
