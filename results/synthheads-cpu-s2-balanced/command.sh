# reproduces results/synthheads-cpu-s2-balanced (run from the repository root)
mkdir -p runs/synthheads-cpu-s2-balanced && papermill nbs/10_train.ipynb runs/synthheads-cpu-s2-balanced/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 2 -p run_dir ../runs/synthheads-cpu-s2-balanced -y '{"overrides": {"stage1": {"desc_reduction": "balanced"}}}'
