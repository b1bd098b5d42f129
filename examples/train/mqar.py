"""Multi-query associative recall (MQAR) data and a tiny mixer-swappable language model.

Data (after Zoology, Arora et al. 2023, "Zoology: measuring and improving recall in efficient language
models"): the vocabulary is split into keys [1, V/2) and values [V/2, V). A sequence of length T starts
with N key-value pairs k_1 v_1 ... k_N v_N (distinct keys, values drawn without replacement); the
remaining T - 2N positions hold (T - 2N) // 2 slots of two tokens; N of them, chosen uniformly at random,
hold a query (one of the N keys, each exactly once, in random order) and the target at the query position
is that key's value (next-token prediction). Every other position is a random token of the whole
vocabulary (the default of Zoology's generator, random_non_queries=True; Zoology's published MQAR
configs use token 0 instead: --filler zero). Loss and accuracy are on the N query positions only.
(Zoology draws the query slots from a power law favouring short gaps; here they are uniform, so
long-range recall is tested as much as short.)

Model: token embedding; L blocks of [LayerNorm -> mixer -> residual -> LayerNorm -> MLP -> residual];
LayerNorm; linear head. No positional embedding: every mixer's q, k, v pass through the same depthwise
causal short convolution (kernel 4, as fla's ShortConvolution and Zoology's recall-capable baselines do),
which is what lets a token see its predecessor (the key before a value). The mixers differ only in how
q, k, v are combined:

  softmax : causal softmax attention (torch scaled_dot_product_attention), scale d_head^-0.5
  linear  : first-order linear attention, o_t = sum_{j<=t} (f(q_t).f(k_j)) v_j   (plain torch)
  hla2, ahla, hla3 : hla_forward(f(q), f(k), v, op=..., masked=True, decay=1)   (hla.torch or the stand-in)

The linear and HLA mixers share the feature map f and the output normalization (train.py --feature,
--norm). Default: f = identity, the unnormalized operator (normalize=False, the paper's default form)
with scale = d_head^-0.5, followed by a parameter-free RMS norm over each head's output ("rms"). The
alternative "ratio" is the operator's own normalize=True (num / (den + eps), scale 1), usually with
f(x) = elu(x) + 1 (positive features, Katharopoulos et al. 2020). Parameter counts are identical across
mixers (the mixers have no parameters of their own).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hla_standin import hla_forward

IGNORE = -100
MIXERS = ("softmax", "linear", "hla2", "ahla", "hla3")


def make_batch(rng, batch, T, pairs, vocab, filler="random"):
    """One MQAR batch: inputs [batch, T] int64, targets [batch, T] (IGNORE except at query positions).
    filler: "random" (uniform tokens of the whole vocabulary at the non-query positions, the default of
    Zoology's generator) or "zero" (token 0, as Zoology's published MQAR configs: random_non_queries=False)."""
    if filler not in ("random", "zero"):
        raise ValueError("filler must be 'random' or 'zero'")
    if 4 * pairs > T:
        raise ValueError("need T >= 4 * pairs (T=%d, pairs=%d)" % (T, pairs))
    half = vocab // 2
    if pairs > half - 1:
        raise ValueError("too many pairs for the vocabulary")
    ctx = 2 * pairs
    slots = (T - ctx) // 2
    if filler == "random":
        inputs = rng.integers(0, vocab, size=(batch, T))      # noise everywhere first
    else:
        inputs = np.zeros((batch, T), dtype=np.int64)
    targets = np.full((batch, T), IGNORE, dtype=np.int64)
    for b in range(batch):
        keys = rng.choice(np.arange(1, half), size=pairs, replace=False)
        vals = rng.choice(np.arange(half, vocab), size=pairs, replace=False)
        inputs[b, 0:ctx:2] = keys
        inputs[b, 1:ctx:2] = vals
        order = rng.permutation(pairs)
        pos = ctx + 2 * np.sort(rng.choice(slots, size=pairs, replace=False))
        inputs[b, pos] = keys[order]
        targets[b, pos] = vals[order]
    return torch.from_numpy(inputs), torch.from_numpy(targets)


FEATURES = {"elu1": lambda x: F.elu(x) + 1.0, "identity": lambda x: x}
NORMS = ("ratio", "rms")


def linear_attention(q, k, v, normalize, scale=1.0, eps=1e-6):
    """First-order causal linear attention, o_t = sum_{j<=t} (q_t.k_j) v_j [/ (sum_{j<=t} q_t.k_j + eps)],
    q/k already featurized; [B, T, H, D] layout. Evaluated as (L * QK^T) V (the O(T^2 d) form, exact)."""
    qh, kh, vh = (x.transpose(1, 2) for x in (q, k, v))
    T = q.shape[1]
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    a = ((qh * scale) @ kh.transpose(-1, -2)).masked_fill(~mask, 0.0)
    o = a @ vh
    if normalize:
        o = o / (a.sum(-1, keepdim=True) + eps)
    return o.transpose(1, 2)


class Mixer(nn.Module):
    def __init__(self, kind, width, heads, conv=4, feature="elu1", norm="ratio"):
        super().__init__()
        if kind not in MIXERS:
            raise ValueError("mixer must be one of %s" % (MIXERS,))
        if feature not in FEATURES or norm not in NORMS:
            raise ValueError("feature must be one of %s and norm one of %s" % (tuple(FEATURES), NORMS))
        self.kind, self.heads, self.dh = kind, heads, width // heads
        self.feature, self.norm = FEATURES[feature], norm
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.conv = nn.Conv1d(3 * width, 3 * width, conv, groups=3 * width, padding=conv - 1) if conv else None
        self.out = nn.Linear(width, width, bias=False)

    def forward(self, x):
        B, T, W = x.shape
        h = self.qkv(x)
        if self.conv is not None:
            h = self.conv(h.transpose(1, 2))[..., :T].transpose(1, 2)   # causal: drop the right pad
        q, k, v = (t.reshape(B, T, self.heads, self.dh) for t in h.chunk(3, dim=-1))
        if self.kind == "softmax":
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True).transpose(1, 2)
        else:
            # norm "ratio": o = num / (den + eps) (scale cancels); "rms": unnormalized numerator with
            # scale d_head^-0.5, then a parameter-free RMS norm over each head's output
            ratio = self.norm == "ratio"
            scale = 1.0 if ratio else self.dh ** -0.5
            fq, fk = self.feature(q).contiguous(), self.feature(k).contiguous()
            if self.kind == "linear":
                o = linear_attention(fq, fk, v, ratio, scale)
            else:
                o, _ = hla_forward(fq, fk, v.contiguous(), op=self.kind, masked=True, normalize=ratio,
                                   decay=1.0, scale=scale)
            if not ratio:
                o = F.rms_norm(o, (self.dh,), eps=1e-6)
        return self.out(o.reshape(B, T, W))


class Block(nn.Module):
    def __init__(self, kind, width, heads, conv, feature, norm):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mixer = Mixer(kind, width, heads, conv, feature, norm)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        x = x + self.mixer(self.n1(x))
        return x + self.mlp(self.n2(x))


class Model(nn.Module):
    def __init__(self, kind, vocab, width=64, heads=2, layers=2, conv=4, feature="elu1", norm="ratio"):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(kind, width, heads, conv, feature, norm) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for b in self.blocks:   # GPT-2 style: residual projections scaled by depth
            nn.init.normal_(b.mixer.out.weight, std=0.02 / math.sqrt(2 * layers))
            nn.init.normal_(b.mlp[2].weight, std=0.02 / math.sqrt(2 * layers))

    def forward(self, tokens):
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))
