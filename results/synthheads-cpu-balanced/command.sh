# reproduces results/synthheads-cpu-balanced (run from the repository root)
mkdir -p runs/synthheads-cpu-balanced && papermill nbs/10_train.ipynb runs/synthheads-cpu-balanced/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-balanced -y '{"overrides": {"stage1": {"desc_reduction": "balanced"}}}'
