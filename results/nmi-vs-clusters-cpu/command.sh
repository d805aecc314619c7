# reproduces results/nmi-vs-clusters-cpu (run from the repository root)
mkdir -p runs/ablations/nmi-vs-clusters-cpu && papermill nbs/21_nmi_vs_clusters.ipynb runs/ablations/nmi-vs-clusters-cpu/21_nmi_vs_clusters.ipynb --cwd nbs -p out_dir ../runs/ablations/nmi-vs-clusters-cpu -y '{"dataset": "synthheads", "data_root": null, "preset": "cpu", "seed": 0, "overrides": {}, "Ms": null}'
