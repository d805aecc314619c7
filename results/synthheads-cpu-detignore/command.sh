# reproduces results/synthheads-cpu-detignore (run from the repository root)
mkdir -p runs/synthheads-cpu-detignore && papermill nbs/10_train.ipynb runs/synthheads-cpu-detignore/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-detignore -y '{"overrides": {"stage1": {"det_ignore": 1.5, "desc_reduction": "balanced"}}}'
