#!/usr/bin/env python3
"""Times the reference PyTorch TRM on one `trm bench` case; `trm bench --reference` runs it.

Ours, not the reference's: it imports the model, loss head and sparse-embedding optimizer
from a checkout of the reference code (--reference DIR) and times them as `pretrain.py`
would run them on the CPU: f32, eager (no torch.compile), the thread count trm uses.

  infer: eval mode, inference mode, one ACT step from a fresh carry.
  train: train mode, one ACT step with the carry kept, the ACT loss, backward, and the
         optimizers of pretrain.py (SignSGD on the puzzle embedding, AdamATan2 on the rest;
         AdamW where the adam_atan2 package is not installed, which the output says).

One untimed warm-up step, then --repeats timed steps. Prints one JSON line:
  {"case", "times_s", "peak_rss_kib", "import_rss_kib", "torch", "threads", "optimizer"}
`--probe` only checks the imports and prints {"torch", "optimizer"}.
"""

import argparse
import json
import os
import resource
import sys
import time


def fail(message):
    print(f"reference_bench.py: {message}", file=sys.stderr)
    sys.exit(2)


def load_reference(ref_dir):
    if not os.path.isfile(os.path.join(ref_dir, "models", "recursive_reasoning", "trm.py")):
        fail(f"{ref_dir}: no models/recursive_reasoning/trm.py (not a checkout of the reference code)")
    sys.path.insert(0, ref_dir)
    try:
        import torch  # noqa: F401
        from models.recursive_reasoning.trm import TinyRecursiveReasoningModel_ACTV1
        from models.losses import ACTLossHead
        from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed
    except ImportError as e:
        fail(f"cannot import the reference model ({e}); it needs torch, pydantic and einops")
    try:
        from adam_atan2 import AdamATan2
        optimizer = ("AdamATan2", AdamATan2)
    except ImportError:
        # The reference's AdamATan2 is a CUDA extension; AdamW does the same amount of work.
        optimizer = ("AdamW (adam_atan2 not installed)", torch.optim.AdamW)
    return TinyRecursiveReasoningModel_ACTV1, ACTLossHead, CastedSparseEmbeddingSignSGD_Distributed, optimizer


def make_batch(torch, batch, seq_len):
    # The maze trm bench uses: walls on a fixed pattern, S and G in the corners.
    row = [1 if i % 7 == 3 else 2 for i in range(seq_len)]
    tokens = torch.tensor([row] * batch, dtype=torch.int32)
    tokens[:, 0] = 3
    tokens[:, -1] = 4
    return {
        "inputs": tokens,
        "labels": tokens.clone(),
        "puzzle_identifiers": torch.zeros(batch, dtype=torch.int32),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reference", required=True)
    p.add_argument("--probe", action="store_true")
    p.add_argument("--case", default="")
    p.add_argument("--kind", choices=["infer", "train"], default="infer")
    p.add_argument("--config", default="{}", help="the arch config as JSON (reference field names)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="the model's forward_dtype")
    a = p.parse_args()

    model_cls, loss_cls, sign_sgd_cls, (opt_name, opt_cls) = load_reference(a.reference)
    import torch

    # The peak before any model exists: what importing torch alone costs.
    import_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    if a.probe:
        print(json.dumps({"torch": torch.__version__, "optimizer": opt_name}))
        return

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = json.loads(a.config)
    cfg.setdefault("H_layers", 0)
    cfg["batch_size"] = a.batch
    cfg["forward_dtype"] = a.dtype
    batch = make_batch(torch, a.batch, cfg["seq_len"])
    model = model_cls(cfg)

    if a.kind == "infer":
        model.eval()

        def step():
            with torch.inference_mode():
                carry = model.initial_carry(batch)
                _, out = model(carry=carry, batch=batch)
                out["q_halt_logits"].sum().item()
    else:
        head = loss_cls(model, loss_type="stablemax_cross_entropy")
        head.train()
        optimizers = [opt_cls(head.parameters(), lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))]
        if cfg.get("puzzle_emb_ndim", 0) > 0:
            optimizers.insert(0, sign_sgd_cls(model.puzzle_emb.buffers(), lr=1e-2, weight_decay=0.1, world_size=1))
        state = {"carry": None}

        def step():
            if state["carry"] is None:
                state["carry"] = head.initial_carry(batch)
            state["carry"], loss, _, _, _ = head(carry=state["carry"], batch=batch, return_keys=[])
            ((1 / a.batch) * loss).backward()
            for opt in optimizers:
                opt.step()
                opt.zero_grad()

    step()
    times = []
    for _ in range(max(1, a.repeats)):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(json.dumps({
        "case": a.case,
        "times_s": times,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "import_rss_kib": import_rss_kib,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "optimizer": opt_name if a.kind == "train" else None,
    }))


if __name__ == "__main__":
    main()
