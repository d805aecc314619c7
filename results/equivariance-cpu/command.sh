# reproduces results/equivariance-cpu (run from the repository root)
mkdir -p runs/ablations/equivariance-cpu && papermill nbs/23_equivariance.ipynb runs/ablations/equivariance-cpu/23_equivariance.ipynb --cwd nbs -p out_dir ../runs/ablations/equivariance-cpu -y '{"dataset": "synthheads", "data_root": null, "preset": "cpu", "seed": 0, "overrides": {}, "pairings": ["clustering", "equivariance"]}'
