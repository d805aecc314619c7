# reproduces results/synthheads-cpu-mirror (run from the repository root)
mkdir -p runs/synthheads-cpu-mirror && papermill nbs/10_train.ipynb runs/synthheads-cpu-mirror/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-mirror -y '{"overrides": {"stage1": {"mirror": 0.5, "warmup_pairing": "equivariance"}, "initializer_args": {}}}'
