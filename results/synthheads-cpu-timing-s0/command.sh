# reproduces results/synthheads-cpu-timing-s0 (run from the repository root)
make train
