# reproduces results/synthheads-cpu-kpgate (run from the repository root)
mkdir -p runs/synthheads-cpu-kpgate && papermill nbs/10_train.ipynb runs/synthheads-cpu-kpgate/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-kpgate -y '{"overrides": {"stage1": {"relabel_pool": "keypoints", "label_gate": 0.3}}}'
