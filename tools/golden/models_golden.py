#!/usr/bin/python3
"""Golden values for sparo's models (ViT, CLIP text transformer, SPARO read-out, CLIP, DINO), from PyTorch.

Writes one safetensors file per case under tests/fixtures/golden/; the C++ model tests load each
file, rebuild the model from its config, load its weights and must reproduce its numbers.

Regenerate (from anywhere, with Debian's python3, which has torch and numpy; the pyenv python3 on
PATH has no torch):

    /usr/bin/python3 tools/golden/models_golden.py

It takes a few seconds. The script is deterministic (fixed seeds, one CPU thread, single-tensor
AdamW, JSON written with a fixed key order), so a rerun rewrites identical bytes; check with
`git diff --stat tests/fixtures/golden`. It also runs every case a second time in float64 from the
same float32 weights and prints how far the float32 numbers are from the float64 ones: that is the
fixture's own rounding noise, the floor for the C++ tolerances.

The models are plain PyTorch modules written here from docs/MODELS.md (the architectures) and
../shared/docs/SPARO.md (the method); state-dict names follow OpenCLIP (CLIP) and
facebookresearch/dino (DINO). Where an operation order is free in the doc, the order of the
reference implementation is used (OpenCLIP on torch 1.13's nn.MultiheadAttention: q / sqrt(dh)
before q·kᵀ; the SPARO reference: (q · d^-1/2)·Kᵀ; DINO: (q·kᵀ) · dh^-1/2; OpenCLIP's loss:
(exp(t) · img) @ txtᵀ). These differ only in rounding.

Cases (image S=16, patch P=4: 16 patches + CLS = 17 tokens; vision width 24, 2 heads of 12,
2 layers before reduce_depth; text vocab 50, context 8, width 24, 2 heads, 2 layers; batch 4):

  clip_baseline                CLS / EOS token + projection, GELU (erf), embed_dim 16
  clip_baseline_quickgelu_gap  QuickGELU, vision global average pool (mean over all 17 tokens)
  clip_bottleneck              bottleneck_dim 8 (proj [24, 8]), then Linear(8, 24) up to embed_dim 24
  sparo_const                  SPARO L=4, V=6, d=12 (default), cont:const, share_kv, reduce_depth 1
  sparo_options_a              sparo_heads 2, share_kv false with sparo_value_dim 10, cont:softmax
                               (proj emits V+1 = 7 per slot), reduce_depth 0
  sparo_options_b              share_queries, cont:norm, sparo_attn_dim 8, reduce_depth 1
  dino_cls                     DINO ViT (LayerNorm eps 1e-6, patch_embed with bias, 2 blocks) read-out
                               norm(x)[:, 0], DINOHead(24 -> 32 -> 32 -> 16, l2-normalise, weight-normed
                               Linear(16, 20) with weight_g fixed at 1 and not trained)
  dino_sparo                   the same backbone with a SPARO read-out (L=4, V=6, d=12, share_kv,
                               cont:const) over norm(x), all 17 tokens; the head sees the SPARO
                               embedding times sqrt(L*V) (models/dino.h: input_scale)

What each fixture holds (all float32 "F32" except input.text "I32"):

  <param name>                 every state-dict tensor under its docs/MODELS.md name. With share_kv the
                               aliases *.sparo.v.weight / *.sparo.v.bias (equal to the k tensors) are
                               written too; with share_queries only visual.sparo.q_emb exists.
  input.images [B, 3, S, S]    torch.randn
  input.text [B, T]            CLIP only: 48 start-of-text, ids in [1, 47], 49 end-of-text (the largest
                               id), then 0 padding; row 0 is full (EOT at T-1)
  input.head_weights [B, K]    DINO only: the fixed weights of the loss below
  output.image_embeds [B, E]   CLIP: unit-norm image embeddings (E = embed_dim, or L·V with SPARO)
  output.text_embeds [B, E]
  output.logits_per_image [B, B]   exp(logit_scale) · image_embeds · text_embedsᵀ
  output.loss []               CLIP: (CE(logits, arange) + CE(logitsᵀ, arange)) / 2
                               DINO: mean over all B·K entries of output.head * input.head_weights
  output.image_attn [B, L, 17] SPARO cases (also dino_sparo): the read-out's attention weights
  output.text_attn [B, L, T]   SPARO CLIP cases (exactly 0 at positions after each row's EOT)
  output.features [B, 24]      DINO: the backbone read-out (CLS token after norm, or the SPARO vector)
  output.head [B, K]           DINO: the head's output (prototype logits, before any temperature)
  grad.<param name>            d output.loss / d param for every trainable parameter (not for the v
                               aliases, not for head.last_layer.weight_g)
  trajectory.loss [6]          output.loss before each of 5 AdamW steps and after the last, same inputs
                               every step: torch.optim.AdamW(lr=1e-3, betas=(0.9, 0.98), eps=1e-6,
                               foreach=False), weight decay 0.2 on every trainable parameter with
                               ndim >= 2 (q_emb and embeddings included), 0 on the others; no
                               logit_scale clamp (it would be a no-op over 5 steps)
  __metadata__                 "case", "config" (JSON, OpenCLIP's schema plus the SPARO keys, or the DINO
                               schema), "torch_version", "adamw" (JSON), "loss" (a description)

Initialisation (does not matter to the C++ test, which loads the weights; chosen so every path
is exercised): OpenCLIP's / the SPARO reference's inits, DINO with the same scales as the CLIP
vision tower (DINO's own trunc_normal(0.02) would make every attention map nearly uniform), then
N(0, 0.02²) noise added to every bias and every LayerNorm gain and bias.
"""

import copy
import json
import math
import os
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "golden")

B = 4
EOT, SOT = 49, 48
ADAMW = {"lr": 1e-3, "betas": [0.9, 0.98], "eps": 1e-6, "weight_decay": 0.2, "decay_rule": "ndim >= 2",
         "steps": 5, "foreach": False, "logit_scale_clamp": False}


# ---- CLIP towers (OpenCLIP names) ---------------------------------------------------------------

class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class MultiheadSelfAttention(nn.Module):
    """nn.MultiheadAttention(D, H) self-attention semantics and parameter names, batch first."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x, mask=None):
        b, n, d = x.shape
        dh = d // self.heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, dh).transpose(1, 2) for t in (q, k, v))  # [B, H, N, dh]
        s = (q / math.sqrt(dh)) @ k.transpose(-2, -1)
        if mask is not None:
            s = s + mask
        a = s.softmax(dim=-1)
        o = (a @ v).transpose(1, 2).reshape(b, n, d)
        return self.out_proj(o)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, mlp_ratio, quick_gelu):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiheadSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)),
            ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
            ("c_proj", nn.Linear(hidden, width)),
        ]))

    def forward(self, x, mask=None):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, mlp_ratio, quick_gelu):
        super().__init__()
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers)])

    def forward(self, x, mask=None):
        for blk in self.resblocks:
            x = blk(x, mask)
        return x


# ---- SPARO ------------------------------------------------------------------------------------

class SPARO(nn.Module):
    """The SPARO read-out of docs/MODELS.md: returns the raw slot outputs y [B, L, V'] and the
    attention [B, L, N]; `normalise_slots` turns y into the unit-norm L·V vector."""

    def __init__(self, dim, L, V_out, d, dv=None, groups=None, share_kv=True, own_queries=True):
        super().__init__()
        groups = groups or L
        assert L % groups == 0
        if share_kv:
            assert dv is None or dv == d
            dv = d
        dv = dv or d
        self.L, self.G, self.d, self.dv, self.share_kv = L, groups, d, dv, share_kv
        self.q_emb = nn.Parameter(torch.randn(1, groups, L // groups, 1, d)) if own_queries else None
        self.k = nn.Linear(dim, groups * d)
        nn.init.xavier_uniform_(self.k.weight)
        nn.init.zeros_(self.k.bias)
        if not share_kv:
            self.v = nn.Linear(dim, groups * dv)
            nn.init.xavier_uniform_(self.v.weight)
            nn.init.zeros_(self.v.bias)
        self.proj = nn.Linear(dv, V_out)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, key_mask=None, q_emb=None):
        q_emb = self.q_emb if q_emb is None else q_emb
        b, n, _ = x.shape
        G, S = self.G, self.L // self.G
        keys = self.k(x).reshape(b, n, G, self.d).permute(0, 2, 1, 3)                 # [B, G, N, d]
        values = keys if self.share_kv else self.v(x).reshape(b, n, G, self.dv).permute(0, 2, 1, 3)
        q = (q_emb * self.d ** -0.5).reshape(1, G, S, self.d)                            # slot g·S + j
        s = q @ keys.transpose(-2, -1)                                                   # [B, G, S, N]
        if key_mask is not None:
            s = s + key_mask[:, None, None, :]
        a = s.softmax(dim=-1)
        z = (a @ values).reshape(b, self.L, self.dv)
        return self.proj(z), a.reshape(b, self.L, n)

    def reference_loop(self, x, key_mask=None, q_emb=None):
        """The same read-out slot by slot, straight from the doc's formulas (a self-check)."""
        q_emb = self.q_emb if q_emb is None else q_emb
        S = self.L // self.G
        keys = self.k(x)
        values = keys if self.share_kv else self.v(x)
        ys, atts = [], []
        for l in range(self.L):
            g, j = divmod(l, S)
            kg = keys[..., g * self.d:(g + 1) * self.d]
            vg = values[..., g * self.dv:(g + 1) * self.dv]
            s = (kg @ q_emb[0, g, j, 0]) / math.sqrt(self.d)
            if key_mask is not None:
                s = s + key_mask
            a = s.softmax(dim=-1)
            ys.append(self.proj((a[..., None] * vg).sum(dim=1)))
            atts.append(a)
        return torch.stack(ys, dim=1), torch.stack(atts, dim=1)


def normalise_slots(y, L, sparo_type):
    """The reference's CLIP._project_for_sparo for the "cont" types: [B, L, V'] -> [B, L·V]."""
    rep, norm = sparo_type.split(":")
    assert rep == "cont"
    if norm == "const":
        weights = torch.sqrt(torch.ones_like(y[..., :1]) / L)
    elif norm == "norm":
        full = torch.norm(y.reshape(y.shape[0], -1), dim=-1, keepdim=True).unsqueeze(-1)
        weights = torch.norm(y, dim=-1, keepdim=True) / full
    elif norm == "softmax":
        weights = F.normalize(F.softmax(y[..., :1], dim=-2), dim=-2)
        y = y[..., 1:]
    else:
        raise ValueError(sparo_type)
    out = F.normalize(y, dim=-1) * weights
    return out.reshape(out.shape[0], -1)


# ---- CLIP -------------------------------------------------------------------------------------

class VisionTransformer(nn.Module):
    def __init__(self, cfg, quick_gelu, out_dim, sparo_kw=None):
        super().__init__()
        S, P, D = cfg["image_size"], cfg["patch_size"], cfg["width"]
        self.heads = D // cfg["head_width"]
        self.gap = cfg["global_average_pool"]
        n = (S // P) ** 2 + 1
        scale = D ** -0.5
        self.conv1 = nn.Conv2d(3, D, kernel_size=P, stride=P, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(D))
        self.positional_embedding = nn.Parameter(scale * torch.randn(n, D))
        self.ln_pre = nn.LayerNorm(D)
        self.transformer = Transformer(D, cfg["layers"], self.heads, cfg["mlp_ratio"], quick_gelu)
        self.ln_post = nn.LayerNorm(D)
        if sparo_kw is None:
            self.proj = nn.Parameter(scale * torch.randn(D, out_dim))
        else:
            self.sparo = SPARO(D, **sparo_kw)

    def forward(self, images):
        x = self.conv1(images).flatten(2).transpose(1, 2)                 # [B, (S/P)², D]
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.transformer(self.ln_pre(x))
        if hasattr(self, "sparo"):
            return self.sparo(self.ln_post(x))
        pooled = x.mean(dim=1) if self.gap else x[:, 0]
        return self.ln_post(pooled) @ self.proj, None


class CLIP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        vc, tc = dict(cfg["vision_cfg"]), dict(cfg["text_cfg"])
        rd = cfg["reduce_depth"] or 0
        vc["layers"] -= rd
        tc["layers"] -= rd
        self.use_sparo = cfg["use_sparo"]
        self.L, self.sparo_type = cfg["L"], cfg["sparo_type"]
        self.share_queries = bool(cfg["share_queries"]) and self.use_sparo
        out_dim = cfg["bottleneck_dim"] or cfg["embed_dim"]
        vis_kw = txt_kw = None
        if self.use_sparo:
            V_out = cfg["V"] + 1 if cfg["sparo_type"].endswith("softmax") else cfg["V"]

            def kw(width, heads, own_queries):
                return dict(L=cfg["L"], V_out=V_out, d=cfg["sparo_attn_dim"] or width // heads,
                            dv=cfg["sparo_value_dim"], groups=cfg["sparo_heads"],
                            share_kv=cfg["share_kv"], own_queries=own_queries)

            vis_kw = kw(vc["width"], vc["width"] // vc["head_width"], True)
            txt_kw = kw(tc["width"], tc["heads"], not self.share_queries)
        self.visual = VisionTransformer(vc, cfg["quick_gelu"], out_dim, vis_kw)
        if cfg["bottleneck_dim"]:
            self.vision_bottleproj = nn.Linear(cfg["bottleneck_dim"], cfg["embed_dim"])
            self.text_bottleproj = nn.Linear(cfg["bottleneck_dim"], cfg["embed_dim"])

        T, Dt = tc["context_length"], tc["width"]
        self.transformer = Transformer(Dt, tc["layers"], tc["heads"], 4.0, cfg["quick_gelu"])
        self.token_embedding = nn.Embedding(tc["vocab_size"], Dt)
        self.positional_embedding = nn.Parameter(torch.empty(T, Dt))
        self.ln_final = nn.LayerNorm(Dt)
        if self.use_sparo:
            self.text_sparo = SPARO(Dt, **txt_kw)
        else:
            self.text_projection = nn.Parameter(torch.empty(Dt, out_dim))
        self.register_buffer("attn_mask", torch.full((T, T), float("-inf")).triu_(1), persistent=False)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

        # OpenCLIP TextTransformer.init_parameters
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = Dt ** -0.5 * (2 * tc["layers"]) ** -0.5
        for blk in self.transformer.resblocks:
            nn.init.normal_(blk.attn.in_proj_weight, std=Dt ** -0.5)
            nn.init.normal_(blk.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(blk.mlp.c_fc.weight, std=(2 * Dt) ** -0.5)
            nn.init.normal_(blk.mlp.c_proj.weight, std=proj_std)
        if not self.use_sparo:
            nn.init.normal_(self.text_projection, std=Dt ** -0.5)

    def encode_image(self, images):
        pooled, attn = self.visual(images)
        if self.use_sparo:
            return normalise_slots(pooled, self.L, self.sparo_type), attn
        if hasattr(self, "vision_bottleproj"):
            pooled = self.vision_bottleproj(pooled)
        return F.normalize(pooled, dim=-1), None

    def encode_text(self, ids):
        ids = ids.long()
        x = self.token_embedding(ids) + self.positional_embedding
        x = self.ln_final(self.transformer(x, self.attn_mask.to(x.dtype)))
        eos = ids.argmax(dim=-1)
        if self.use_sparo:
            pos = torch.arange(ids.shape[1], device=ids.device)
            key_mask = torch.zeros(ids.shape, dtype=x.dtype, device=ids.device).masked_fill(pos[None, :] > eos[:, None], float("-inf"))
            q = self.visual.sparo.q_emb if self.share_queries else None
            y, attn = self.text_sparo(x, key_mask, q_emb=q)
            return normalise_slots(y, self.L, self.sparo_type), attn
        pooled = x[torch.arange(x.shape[0], device=x.device), eos] @ self.text_projection
        if hasattr(self, "text_bottleproj"):
            pooled = self.text_bottleproj(pooled)
        return F.normalize(pooled, dim=-1), None

    def forward(self, inputs):
        img, img_attn = self.encode_image(inputs["images"])
        txt, txt_attn = self.encode_text(inputs["text"])
        logits = self.logit_scale.exp() * img @ txt.t()   # OpenCLIP's order: (exp(t)·img) @ txtᵀ
        labels = torch.arange(logits.shape[0], device=logits.device)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        out = OrderedDict([("image_embeds", img), ("text_embeds", txt), ("logits_per_image", logits),
                           ("loss", loss)])
        if self.use_sparo:
            out["image_attn"] = img_attn
            out["text_attn"] = txt_attn
        return out

    def export_state(self):
        """State dict under the doc's names, with the share_kv aliases v = k (shared queries: only
        visual.sparo.q_emb, which is all this module holds)."""
        sd = OrderedDict()
        for name, t in self.state_dict().items():
            sd[name] = t
            if name.endswith("sparo.k.bias") and getattr(self._sparo_for(name), "share_kv"):
                prefix = name[:-len("k.bias")]
                sd[prefix + "v.weight"] = sd[prefix + "k.weight"]
                sd[prefix + "v.bias"] = t
        return sd

    def _sparo_for(self, name):
        return self.visual.sparo if name.startswith("visual.") else self.text_sparo


# ---- DINO (facebookresearch/dino names) -----------------------------------------------------------

class DinoAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        dh = c // self.heads
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)) * dh ** -0.5).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


class DinoMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DinoBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DinoAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = DinoMlp(dim, int(dim * mlp_ratio))

    def forward(self, x):   # drop_path is 0 in the fixtures: the identity
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class WeightNormLinear(nn.Module):
    """nn.utils.weight_norm(nn.Linear(in, out, bias=False)) with dim 0: weight_g [out, 1], weight_v."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.weight_v = nn.Parameter(nn.Linear(in_dim, out_dim, bias=False).weight.detach().clone())
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=False)

    def forward(self, x):
        w = self.weight_v * (self.weight_g / torch.norm(self.weight_v, dim=1, keepdim=True))
        return F.linear(x, w)


class DINOHead(nn.Module):
    def __init__(self, in_dim, hidden, bottleneck, out_dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.last_layer = WeightNormLinear(bottleneck, out_dim)

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class DINO(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, n = cfg["width"], (cfg["image_size"] // cfg["patch_size"]) ** 2 + 1
        self.readout, self.L, self.sparo_type = cfg["readout"], cfg["L"], cfg["sparo_type"]
        self.patch_embed = PatchEmbed(cfg["patch_size"], D)
        self.cls_token = nn.Parameter(torch.randn(1, 1, D) * D ** -0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, n, D) * D ** -0.5)
        self.blocks = nn.ModuleList([DinoBlock(D, cfg["heads"], cfg["mlp_ratio"]) for _ in range(cfg["depth"])])
        self.norm = nn.LayerNorm(D, eps=1e-6)
        if self.readout == "sparo":
            self.sparo = SPARO(D, L=cfg["L"], V_out=cfg["V"], d=cfg["sparo_attn_dim"] or D // cfg["heads"],
                               groups=cfg["sparo_heads"], share_kv=cfg["share_kv"])
            head_in = cfg["L"] * cfg["V"]
        else:
            head_in = D
        self.head = DINOHead(head_in, cfg["head_hidden"], cfg["head_bottleneck"], cfg["head_out"])
        for blk in self.blocks:   # attention far from uniform (see the top of the file)
            nn.init.normal_(blk.attn.qkv.weight, std=D ** -0.5)

    def forward(self, inputs):
        x = self.patch_embed(inputs["images"])
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        out = OrderedDict()
        if self.readout == "sparo":
            y, attn = self.sparo(x)
            feats = normalise_slots(y, self.L, self.sparo_type)
        else:
            feats, attn = x[:, 0], None
        # A SPARO embedding (norm 1) enters the head scaled to about 1 per coordinate, as the
        # CLS feature is (sparo's models/dino.cpp).
        head = self.head(feats * (feats.shape[-1] ** 0.5) if self.readout == "sparo" else feats)
        out["features"] = feats
        out["head"] = head
        out["loss"] = (head * inputs["head_weights"]).mean()
        if attn is not None:
            out["image_attn"] = attn
        return out

    def export_state(self):
        sd = OrderedDict()
        for name, t in self.state_dict().items():
            sd[name] = t
            if name == "sparo.k.bias" and self.sparo.share_kv:
                sd["sparo.v.weight"] = sd["sparo.k.weight"]
                sd["sparo.v.bias"] = t
        return sd


# ---- cases ------------------------------------------------------------------------------------

def clip_config(**over):
    cfg = OrderedDict([
        ("embed_dim", 16), ("quick_gelu", False),
        ("vision_cfg", OrderedDict([("image_size", 16), ("patch_size", 4), ("width", 24), ("layers", 2),
                                    ("head_width", 12), ("mlp_ratio", 4.0), ("global_average_pool", False)])),
        ("text_cfg", OrderedDict([("context_length", 8), ("vocab_size", 50), ("width", 24), ("heads", 2),
                                  ("layers", 2)])),
        ("use_sparo", False), ("L", None), ("V", None), ("sparo_attn_dim", None), ("sparo_value_dim", None),
        ("sparo_heads", None), ("reduce_depth", 0), ("share_kv", True), ("share_queries", False),
        ("sparo_type", "cont:const"), ("bottleneck_dim", None),
    ])
    for k, v in over.items():
        if k == "global_average_pool":
            cfg["vision_cfg"][k] = v
        else:
            assert k in cfg, k
            cfg[k] = v
    return cfg


def sparo_config(**over):
    base = dict(use_sparo=True, L=4, V=6, embed_dim=24, reduce_depth=1)
    base.update(over)
    return clip_config(**base)


def dino_config(readout):
    sp = readout == "sparo"
    return OrderedDict([
        ("model", "dino"), ("image_size", 16), ("patch_size", 4), ("width", 24), ("depth", 2), ("heads", 2),
        ("mlp_ratio", 4.0), ("qkv_bias", True), ("norm_eps", 1e-6), ("drop_path_rate", 0.0),
        ("readout", readout), ("L", 4 if sp else None), ("V", 6 if sp else None), ("sparo_attn_dim", None),
        ("sparo_heads", None), ("share_kv", True), ("sparo_type", "cont:const"),
        ("head_hidden", 32), ("head_bottleneck", 16), ("head_out", 20), ("norm_last_layer", True),
    ])


CASES = [
    ("clip_baseline", clip_config()),
    ("clip_baseline_quickgelu_gap", clip_config(quick_gelu=True, global_average_pool=True)),
    ("clip_bottleneck", clip_config(bottleneck_dim=8, embed_dim=24)),
    ("sparo_const", sparo_config()),
    ("sparo_options_a", sparo_config(sparo_heads=2, share_kv=False, sparo_value_dim=10, sparo_type="cont:softmax",
                                     reduce_depth=0)),
    ("sparo_options_b", sparo_config(share_queries=True, sparo_type="cont:norm", sparo_attn_dim=8)),
    ("dino_cls", dino_config("cls")),
    ("dino_sparo", dino_config("sparo")),
]

CLIP_LOSS = "(cross_entropy(logits_per_image, arange(B)) + cross_entropy(logits_per_image^T, arange(B))) / 2"
DINO_LOSS = "mean over all B*K entries of output.head * input.head_weights"


def build(cfg):
    return DINO(cfg) if cfg.get("model") == "dino" else CLIP(cfg)


def make_model(cfg, seed):
    torch.manual_seed(seed)
    model = build(cfg)
    gen = torch.Generator().manual_seed(seed + 500)
    with torch.no_grad():
        for name, m in model.named_modules():
            for pname, p in m.named_parameters(recurse=False):
                if pname == "bias" or pname.endswith("_bias") or isinstance(m, nn.LayerNorm):
                    p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model


def make_inputs(cfg, seed):
    gen = torch.Generator().manual_seed(seed + 1000)
    if cfg.get("model") == "dino":
        S = cfg["image_size"]
        images = torch.randn(B, 3, S, S, generator=gen)
        return OrderedDict([("images", images), ("head_weights", torch.randn(B, cfg["head_out"], generator=gen))])
    S, T = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"]
    images = torch.randn(B, 3, S, S, generator=gen)
    text = torch.zeros(B, T, dtype=torch.int32)
    for b, n in enumerate([T, 4, 6, 2]):   # tokens incl. SOT and EOT; row 0 full, row 3 an empty caption
        mid = torch.randint(1, EOT - 1, (n - 2,), generator=gen, dtype=torch.int32)
        text[b, :n] = torch.cat([torch.tensor([SOT], dtype=torch.int32), mid, torch.tensor([EOT], dtype=torch.int32)])
    return OrderedDict([("images", images), ("text", text)])


def run(model, inputs, steps=ADAMW["steps"]):
    """Outputs and gradients at the initial weights, then the AdamW loss trajectory."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for _, p in named if p.ndim >= 2]
    no_decay = [p for _, p in named if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]), eps=ADAMW["eps"], foreach=False)
    traj, outputs, grads = [], None, None
    for step in range(steps + 1):
        opt.zero_grad(set_to_none=True)
        out = model(inputs)
        traj.append(out["loss"].detach().clone())
        if step == steps:
            break
        out["loss"].backward()
        if step == 0:
            outputs = OrderedDict((k, v.detach().clone()) for k, v in out.items())
            grads = OrderedDict((n, p.grad.detach().clone()) for n, p in named)
        opt.step()
    return outputs, grads, torch.stack(traj)


def self_check(model):
    """My attention against nn.MultiheadAttention, the batched SPARO against the slot-by-slot loop
    (on a float64 copy: the model itself is not touched)."""
    m = copy.deepcopy(model).double()
    with torch.no_grad():
        x = torch.randn(B, 8, 24, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        for blk in (m.transformer.resblocks if isinstance(m, CLIP) else []):
            a = blk.attn
            mha = nn.MultiheadAttention(24, a.heads).double()
            mha.in_proj_weight.copy_(a.in_proj_weight)
            mha.in_proj_bias.copy_(a.in_proj_bias)
            mha.out_proj.load_state_dict(a.out_proj.state_dict())
            mask = torch.full((8, 8), float("-inf"), dtype=torch.float64).triu_(1)
            xt = x.transpose(0, 1)
            ref = mha(xt, xt, xt, attn_mask=mask, need_weights=False)[0].transpose(0, 1)
            assert torch.allclose(a(x, mask), ref, rtol=0, atol=1e-12)
        for sp in [s for s in m.modules() if isinstance(s, SPARO)]:
            q = sp.q_emb if sp.q_emb is not None else m.visual.sparo.q_emb
            key_mask = torch.zeros(B, 8, dtype=torch.float64)
            key_mask[1, 5:] = float("-inf")
            y1, a1 = sp(x, key_mask, q_emb=q)
            y2, a2 = sp.reference_loop(x, key_mask, q_emb=q)
            assert torch.allclose(y1, y2, rtol=0, atol=1e-12) and torch.allclose(a1, a2, rtol=0, atol=1e-12)


# ---- safetensors ------------------------------------------------------------------------------

def safetensors_bytes(tensors, metadata):
    header = OrderedDict([("__metadata__", metadata)])
    chunks, offset = [], 0
    for name, t in tensors:
        t = t.detach().contiguous()
        if t.dtype == torch.int32:
            dtype, data = "I32", t.numpy().astype("<i4").tobytes()
        else:
            assert t.dtype == torch.float32, (name, t.dtype)
            dtype, data = "F32", t.numpy().astype("<f4").tobytes()
        assert name not in header, name
        header[name] = OrderedDict([("dtype", dtype), ("shape", list(t.shape)),
                                    ("data_offsets", [offset, offset + len(data)])])
        chunks.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(chunks)


# ---- float32 vs float64 noise -----------------------------------------------------------------

def rel(a, b):
    """max |a - b| / max |b| over the tensor (the error relative to the tensor's scale)."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def noise_report(case, o32, g32, t32, o64, g64, t64):
    out = max(rel(o32[k], o64[k]) for k in o32)
    worst_out = max(o32, key=lambda k: rel(o32[k], o64[k]))
    # Gradients that are zero in exact arithmetic (a key bias without shared values: softmax does not
    # see a shift common to all keys) hold only float32 rounding; reported apart.
    zero = [k for k in g32 if float(g64[k].abs().max()) < 1e-12]
    nonzero = [k for k in g32 if k not in zero]
    grd = max(rel(g32[k], g64[k]) for k in nonzero)
    worst_grad = max(nonzero, key=lambda k: rel(g32[k], g64[k]))
    traj = float(((t32.double() - t64) / t64.abs()).abs().max())
    print("%-28s outputs %.2e (%s)  grads %.2e (%s)  trajectory %.2e"
          % (case, out, worst_out, grd, worst_grad, traj))
    for k in zero:
        print("%-28s   grad.%s is 0 in exact arithmetic; float32 max |g| %.1e" % ("", k, float(g32[k].abs().max())))


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    print("float32 vs float64, max |f32 - f64| / max |f64| per tensor, worst tensor named "
          "(trajectory: elementwise relative):")
    for idx, (case, cfg) in enumerate(CASES):
        seed = 100 * (idx + 1)
        model = make_model(cfg, seed)
        inputs = make_inputs(cfg, seed)
        self_check(model)
        state = model.export_state()
        state32 = OrderedDict((k, v.detach().clone()) for k, v in state.items())

        # float64 twin from the same float32 weights (a fresh module: no shared optimiser state)
        model64 = build(cfg)
        model64.load_state_dict(model.state_dict())
        model64.double()
        inputs64 = OrderedDict((k, v.double() if v.is_floating_point() else v) for k, v in inputs.items())

        o32, g32, t32 = run(model, inputs)
        o64, g64, t64 = run(model64, inputs64)
        noise_report(case, o32, g32, t32, o64, g64, t64)

        tensors = list(state32.items())
        tensors += [("input." + k, v) for k, v in inputs.items()]
        tensors += [("output." + k, v) for k, v in o32.items()]
        tensors += [("grad." + k, v) for k, v in g32.items()]
        tensors.append(("trajectory.loss", t32))
        meta = OrderedDict([
            ("case", case),
            ("config", json.dumps(cfg)),
            ("torch_version", torch.__version__),
            ("adamw", json.dumps(ADAMW)),
            ("loss", DINO_LOSS if cfg.get("model") == "dino" else CLIP_LOSS),
        ])
        data = safetensors_bytes(tensors, meta)
        path = os.path.join(OUT_DIR, case + ".safetensors")
        with open(path, "wb") as f:
            f.write(data)
        total += len(data)
        print("  wrote %s (%d bytes, %d tensors)" % (os.path.relpath(path), len(data), len(tensors)))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
