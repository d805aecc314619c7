# reproduces results/synthheads-cpu-fresh-kmeans-s2 (run from the repository root)
mkdir -p runs/synthheads-cpu-fresh-kmeans-s2 && papermill nbs/10_train.ipynb runs/synthheads-cpu-fresh-kmeans-s2/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 2 -p run_dir ../runs/synthheads-cpu-fresh-kmeans-s2 -y '{"overrides": {"stage1": {"recluster_init": "fresh"}}}'
