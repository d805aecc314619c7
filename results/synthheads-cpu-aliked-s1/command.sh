# reproduces results/synthheads-cpu-aliked-s1 (run from the repository root)
mkdir -p runs/synthheads-cpu-aliked-s1 && papermill nbs/10_train.ipynb runs/synthheads-cpu-aliked-s1/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 1 -p run_dir ../runs/synthheads-cpu-aliked-s1 -y '{"overrides": {"initializer": "aliked", "initializer_args": {"upsample": 1.5, "conf_thresh": 0.1}}}'
