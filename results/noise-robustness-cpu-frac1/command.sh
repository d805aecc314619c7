# reproduces results/noise-robustness-cpu-frac1 (run from the repository root)
.venv/bin/papermill nbs/22_noise_robustness.ipynb runs/ablations/22.ipynb --cwd nbs -y '{"fractions": [1.0], "n_noises": [0, 20]}'
