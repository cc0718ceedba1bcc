"""torch.mm's GFLOP/s on the shapes of shared/benches/gemm_peak.rs, f32, with as many threads
as `trm bench` uses (2 on the project's machine; TRM_THREADS to change).

    venv/bin/python scripts/torch_matmul_peak.py
"""
import os
import time

import torch

SHAPES = [(7328, 128, 384), (7328, 128, 1024), (7328, 512, 128), (3664, 128, 1024), (916, 512, 1536),
          (916, 512, 3072), (916, 1536, 512), (64, 64, 916), (64, 916, 64), (916, 916, 64), (2048, 2048, 2048)]

torch.set_num_threads(int(os.environ.get("TRM_THREADS", os.cpu_count() or 1)))
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
for m, k, n in SHAPES:
    a = torch.arange(m * k, dtype=torch.float32).remainder(7).mul(0.25).reshape(m, k)
    b = torch.arange(k * n, dtype=torch.float32).remainder(5).mul(0.5).reshape(k, n)
    a @ b
    flop = 2.0 * m * k * n
    repeats = max(3, int(2e10 / flop))
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    rate = flop * repeats / (time.perf_counter() - start) / 1e9
    print(f"{f'{m}x{k}x{n}':>18}  {rate:9.1f} GF/s")
