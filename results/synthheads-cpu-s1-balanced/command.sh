# reproduces results/synthheads-cpu-s1-balanced (run from the repository root)
mkdir -p runs/synthheads-cpu-s1-balanced && papermill nbs/10_train.ipynb runs/synthheads-cpu-s1-balanced/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 1 -p run_dir ../runs/synthheads-cpu-s1-balanced -y '{"overrides": {"stage1": {"desc_reduction": "balanced"}}}'
