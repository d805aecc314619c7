# reproduces results/synthheads-cpu-exchange (run from the repository root)
mkdir -p runs/synthheads-cpu-exchange && papermill nbs/10_train.ipynb runs/synthheads-cpu-exchange/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-exchange -y '{"overrides": {"stage1": {"exchange": 0.1, "warmup_pairing": "equivariance"}, "initializer_args": {}}}'
