# reproduces results/synthheads-cpu-pair-batch (run from the repository root)
mkdir -p runs/synthheads-cpu-pair-batch && papermill nbs/10_train.ipynb runs/synthheads-cpu-pair-batch/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-pair-batch -y '{"overrides": {"stage1": {"pair_scope": "batch"}}}'
