# reproduces results/synthheads-cpu-warmup-clusters-s1 (run from the repository root)
mkdir -p runs/synthheads-cpu-warmup-clusters-s1 && papermill nbs/10_train.ipynb runs/synthheads-cpu-warmup-clusters-s1/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 1 -p run_dir ../runs/synthheads-cpu-warmup-clusters-s1 -y '{"overrides": {"stage1": {"warmup_pairing": "clustering"}}}'
