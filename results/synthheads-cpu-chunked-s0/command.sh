# reproduces results/synthheads-cpu-chunked-s0 (run from the repository root)
git checkout 96f0d8d && make train
