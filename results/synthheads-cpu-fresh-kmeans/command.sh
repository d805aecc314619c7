# reproduces results/synthheads-cpu-fresh-kmeans (run from the repository root)
mkdir -p runs/synthheads-cpu-fresh-kmeans && papermill nbs/10_train.ipynb runs/synthheads-cpu-fresh-kmeans/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-fresh-kmeans -y '{"overrides": {"stage1": {"recluster_init": "fresh"}}}'
