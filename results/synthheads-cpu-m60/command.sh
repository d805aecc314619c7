# reproduces results/synthheads-cpu-m60 (run from the repository root)
mkdir -p runs/synthheads-cpu-m60 && papermill nbs/10_train.ipynb runs/synthheads-cpu-m60/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-m60 -y '{"overrides": {"stage1": {"M": 60, "warmup_pairing": "equivariance"}, "initializer_args": {}}}'
