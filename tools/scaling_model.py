#!/usr/bin/env python3
"""The α–β model of docs/SCALING.md: data-parallel ViT-B/16 CLIP on p GPUs.

Ring all-reduce of n bytes over p ranks:  2(p-1)/p · n/β + 2(p-1)·α
Ring all-gather, n bytes gathered in all:   (p-1)/p · n/β +  (p-1)·α
(a reduce-scatter, the all-gather's backward, costs the same as the all-gather).

  python3 tools/scaling_model.py                 the ViT-B/16 table (the assumptions below)
  python3 tools/scaling_model.py --check A B N   the model with α = A s, β = B bytes/s for an
                                                 all-reduce of N bytes on 2 ranks (the fit of
                                                 bench_scaling against its measured time)

Every assumption is a named constant here and stated in docs/SCALING.md. Standard library only.
"""
import argparse

# ---- ViT-B/16 CLIP (OpenCLIP ViT-B-16) ----
PARAMS = 149.6e6          # vision 86.2 M + text 63.4 M (+ logit scale)
EMBED = 512               # embedding width d
GRAD_BYTES = PARAMS * 4   # f32 gradients, as sparo averages them (bf16 would halve it)
# FLOPs per sample, forward (2 per multiply-add): vision 12 layers × (24·d²·N + 4·N²·d) with
# d = 768, N = 197, + patch embedding; text 12 × (24·512²·77 + 4·77²·512). Training ≈ 3× forward.
def _layer(d, n):
    return 24 * d * d * n + 4 * n * n * d
FWD_FLOPS = 12 * _layer(768, 197) + 2 * 3 * 16 * 16 * 768 * 196 + 12 * _layer(512, 77)
TRAIN_FLOPS = 3 * FWD_FLOPS
BATCH = 256               # per GPU
GPU_FLOPS = 125e12        # sustained: an A100's 312 TFLOP/s bf16 at 40 % utilisation
BACKWARD_SHARE = 2 / 3    # of the compute: the backward, which gradient communication can overlap
BUCKET = 25e6             # bytes: the last bucket's all-reduce cannot overlap anything
LOSS_COPIES = 4           # B×B f32 buffers the loss holds at once (logits, softmax over rows and
                          # over columns, the gradient): an estimate, not a measurement

# ---- the network ----
GPUS_PER_NODE = 8
BW_INTRA, LAT_INTRA = 25e9, 5e-6     # bytes/s, s: a GPU to another in its node
BW_INTER, LAT_INTER = 12.5e9, 10e-6  # a GPU to one in another node (one NIC per GPU); the
                                     # issue states no inter-node latency: 10 µs assumed


def allreduce(n, p, a, b):
    return 0.0 if p == 1 else 2 * (p - 1) / p * n / b + 2 * (p - 1) * a


def allgather(n, p, a, b):
    return 0.0 if p == 1 else (p - 1) / p * n / b + (p - 1) * a


def link(p):
    """The flat ring's slowest hop: inside a node until the ring leaves it."""
    return (LAT_INTRA, BW_INTRA) if p <= GPUS_PER_NODE else (LAT_INTER, BW_INTER)


def allreduce_flat(n, p):
    a, b = link(p)
    return allreduce(n, p, a, b)


def allreduce_hier(n, p):
    """Reduce-scatter in the node, all-reduce of the 1/8 shards across nodes (8 rings at once,
    one per NIC), all-gather in the node."""
    if p <= GPUS_PER_NODE:
        return allreduce_flat(n, p)
    g, m = GPUS_PER_NODE, p // GPUS_PER_NODE
    inner = 2 * allgather(n, g, LAT_INTRA, BW_INTRA)
    return inner + allreduce(n / g, m, LAT_INTER, BW_INTER)


def allgather_flat(n, p):
    a, b = link(p)
    return allgather(n, p, a, b)


def table():
    compute = BATCH * TRAIN_FLOPS / GPU_FLOPS
    print(f"ViT-B/16 CLIP: {PARAMS / 1e6:.1f} M parameters, {FWD_FLOPS / 1e9:.1f} GFLOP forward per sample, "
          f"{TRAIN_FLOPS / 1e9:.1f} GFLOP trained; batch {BATCH} per GPU at {GPU_FLOPS / 1e12:.0f} TFLOP/s: "
          f"compute {1e3 * compute:.1f} ms per step")
    print(f"gradients {GRAD_BYTES / 1e6:.0f} MB (f32); links {BW_INTRA / 1e9:g} GB/s + {1e6 * LAT_INTRA:g} µs in a "
          f"node of {GPUS_PER_NODE}, {BW_INTER / 1e9:g} GB/s + {1e6 * LAT_INTER:g} µs between nodes")
    head = ("GPUs", "global B", "grad flat", "grad hier", "gather", "logits BxB", "logits bxB",
            "BxB f32", "step no-ovl", "eff", "step ovl", "eff", "step ovl+local", "eff")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for p in (8, 64, 512):
        B = BATCH * p
        g_flat, g_hier = allreduce_flat(GRAD_BYTES, p), allreduce_hier(GRAD_BYTES, p)
        grad = min(g_flat, g_hier)
        # both towers' embeddings, gathered forward and reduce-scattered backward
        gather = 2 * (2 * allgather_flat(B * EMBED * 4, p))
        # logits and their backward (3 matmuls of B·B·d, resp. b·B·d) beyond the one-GPU b·b
        full = (6 * B * B * EMBED - 6 * BATCH * BATCH * EMBED) / GPU_FLOPS
        local = (6 * BATCH * B * EMBED - 6 * BATCH * BATCH * EMBED) / GPU_FLOPS
        no_overlap = compute + grad + gather + full
        exposed = max(grad - BACKWARD_SHARE * compute, allreduce_flat(BUCKET, p))
        overlap = compute + exposed + gather + full
        overlap_local = compute + exposed + gather + local
        ms = lambda t: f"{1e3 * t:.1f} ms"
        print(f"| {p} | {B} | {ms(g_flat)} | {ms(g_hier)} | {ms(gather)} | {ms(full)} | {ms(local)} | "
              f"{LOSS_COPIES * B * B * 4 / 1e9:.1f} GB | {ms(no_overlap)} | {compute / no_overlap:.0%} | "
              f"{ms(overlap)} | {compute / overlap:.0%} | {ms(overlap_local)} | {compute / overlap_local:.0%} |")
    # where the gathered embeddings cost as much as the gradients (both bandwidth-bound):
    # 2 towers × 2 passes × B·d·4 (p-1)/p / β  =  2 (p-1)/p · 4·P / β   ->  B = P / (2 d)
    print(f"embedding gather (fwd + bwd) = gradient all-reduce at a global batch of {PARAMS / (2 * EMBED):.0f}")


def check(alpha, beta, n):
    print(f"2-rank all-reduce of {n:.0f} B at α = {1e6 * alpha:.2f} µs, β = {beta / 1e9:.2f} GB/s: "
          f"{1e3 * allreduce(n, 2, alpha, beta):.3f} ms")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", nargs=3, type=float, metavar=("ALPHA_S", "BETA_BPS", "BYTES"))
    args = ap.parse_args()
    if args.check:
        check(*args.check)
    else:
        table()
