# reproduces results/synthheads-cpu-pairs (run from the repository root)
mkdir -p runs/synthheads-cpu-pairs && papermill nbs/10_train.ipynb runs/synthheads-cpu-pairs/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-pairs -y '{"overrides": {"stage1": {"desc_reduction": "pairs"}}}'
