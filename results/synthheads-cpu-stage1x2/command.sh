# reproduces results/synthheads-cpu-stage1x2 (run from the repository root)
mkdir -p runs/synthheads-cpu-stage1x2 && papermill nbs/10_train.ipynb runs/synthheads-cpu-stage1x2/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-stage1x2 -y '{"overrides": {"stage1": {"warmup_iters": 2400, "round_iters": 1000, "desc_reduction": "balanced"}}}'
