# reproduces results/synthheads-cpu-yaw30 (run from the repository root)
mkdir -p runs/synthheads-cpu-yaw30 && papermill nbs/10_train.ipynb runs/synthheads-cpu-yaw30/10_train.ipynb --cwd nbs -p dataset synthheads -p preset cpu -p seed 0 -p run_dir ../runs/synthheads-cpu-yaw30 -y '{"overrides": {"synth": {"yaw_range": 30}, "stage1": {"desc_reduction": "balanced"}}}'
