# reproduces results/synthheads-cpu-warmup-clusters (run from the repository root)
mkdir -p runs/synthheads-cpu-warmup-clusters && papermill nbs/10_train.ipynb runs/synthheads-cpu-warmup-clusters/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-warmup-clusters -y '{"overrides": {"stage1": {"warmup_pairing": "clustering"}}}'
