"""Training-step time on CPU, fp32 vs bf16 autocast, for the default model's shapes.

Times whole optimisation steps (forward, backward, clipping, Adam) of the captioner at batch 64,
10 frames, a 7x7x1280 grid, with the options of the shipped model (L-STAP att, input rank 256,
position bias, temporal delta), once in fp32 and once under ``torch.autocast("cpu", bfloat16)``
as ``tvcaption train`` uses it on a CPU with native bf16. Inputs are random (the time of a step
does not depend on the values); captions are random token ids of the real vocabulary's size.
Also reports how far the bf16 loss is from the fp32 loss on the same batch and weights.

    python bench/cpu_bf16.py [--steps 5] [--threads 2] [--pooling att] [--out bench/results/cpu_bf16.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    from tvcaption.model import CaptionModel, pad_tokens
    from tvcaption.model.dims import ModelDims
    from tvcaption.train_devices import cpu_has_native_bf16

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per precision (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pooling", default="att", choices=("att", "avg", "mean"))
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dims = ModelDims(feature_dim=1280, global_dim=1280, vocab_size=157, hidden=256, attention=128, embedding=128,
                     pooling=args.pooling, matching=True, frames=10, input_rank=256, position_bias=True,
                     temporal_delta=True)
    g = torch.Generator().manual_seed(0)
    local = torch.rand(args.batch, 10, 7, 7, 1280, generator=g) * 2
    glob = local.mean((1, 2, 3))
    tokens, lengths = pad_tokens([torch.randint(4, 157, (int(n),), generator=g).tolist()
                                  for n in torch.randint(6, 16, (args.batch,), generator=g)], torch.device("cpu"))
    result: dict = {"native_bf16": cpu_has_native_bf16(), "threads": args.threads, "batch": args.batch,
                    "pooling": args.pooling, "seconds_per_step": {}, "loss": {}}
    for name, ctx in (("fp32", nullcontext), ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):
        torch.manual_seed(0)
        model = CaptionModel(dims)
        model.eval()  # no dropout: the two precisions see the same function
        with torch.no_grad(), ctx():
            result["loss"][name] = float(model.loss(local, glob, tokens, lengths).total)
        model.train()
        opt = torch.optim.Adam(model.parameters(), 3e-4)
        times = []
        for _ in range(args.steps + 1):
            t = time.perf_counter()
            with ctx():
                loss = model.loss(local, glob, tokens, lengths).total
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            times.append(time.perf_counter() - t)
        result["seconds_per_step"][name] = sorted(times[1:])[len(times[1:]) // 2]  # median, warm-up dropped
        print(f"{name}: {result['seconds_per_step'][name]:.3f} s/step, loss {result['loss'][name]:.4f}", flush=True)
    sps = result["seconds_per_step"]
    result["speedup"] = sps["fp32"] / sps["bf16"]
    result["loss_relative_difference"] = abs(result["loss"]["bf16"] - result["loss"]["fp32"]) / result["loss"]["fp32"]
    print(f"bf16 autocast: {result['speedup']:.2f}x faster per step; loss differs by "
          f"{100 * result['loss_relative_difference']:.2f}%")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
