# reproduces results/synthheads-cpu-fresh-kmeans-s1 (run from the repository root)
mkdir -p runs/synthheads-cpu-fresh-kmeans-s1 && papermill nbs/10_train.ipynb runs/synthheads-cpu-fresh-kmeans-s1/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 1 -p run_dir ../runs/synthheads-cpu-fresh-kmeans-s1 -y '{"overrides": {"stage1": {"recluster_init": "fresh"}}}'
