# reproduces results/synthheads-cpu-plain-sift (run from the repository root)
mkdir -p runs/synthheads-cpu-plain-sift && papermill nbs/10_train.ipynb runs/synthheads-cpu-plain-sift/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-plain-sift -y '{"overrides": {"initializer_args": {}, "stage1": {"warmup_pairing": "equivariance"}}}'
