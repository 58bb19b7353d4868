"""The kNN monitor's feature extraction of the zoo MAE ViT (2,048 bank images): float32 with F.linear and with
core.linear, bf16 with F.linear and with the linear layers as convolutions; alternating, medians of 4, seconds.
Run at 57e0562, quiet, 2 threads: {fp32 F.linear: 1.107, fp32 core.linear: 0.657, bf16 F.linear: 0.613, bf16 conv: 0.54}
(an earlier, separate run from vit_monitor_bf16_conv.py; usage: python results/foundation/dropped/vit_monitor_precision.py [method])"""
import sys, time, statistics, torch
from unittest import mock
import ssl_learn.core as core
from ssl_learn.data import prepare_data
from ssl_learn.models import load_backbone
from ssl_learn.features import extract_features
from ssl_learn.method import method_tier
F = torch.nn.functional
def conv_any(x, weight, bias=None):   # the conv route also under autocast
    if x.device.type != 'cpu' or weight.ndim != 2 or not x.numel(): return F.linear(x, weight, bias)
    (N, K), M = weight.shape, x.numel() // weight.shape[1]
    B = 16 if M % 16 == 0 else 1
    y = F.conv2d(x.reshape(B, M // B, 1, K).permute(0, 3, 1, 2), weight.reshape(N, K, 1, 1), bias)
    return y.permute(0, 2, 3, 1).reshape(*x.shape[:-1], N)
def flin(x, w, b=None): return F.linear(x, w, b)
m = sys.argv[1] if len(sys.argv) > 1 else 'mae'
bb = load_backbone(f'results/bench/fmnist/zoo/backbones/{m}.pth').eval()
tier = method_tier(m, 'zoo'); pre, bank, query, *_ = prepare_data('fmnist', tier)
x = bank.x[:2048]
cfg = {'fp32 F.linear': ('fp32', flin), 'fp32 core.linear': ('fp32', core.linear), 'bf16 F.linear': ('bf16', flin), 'bf16 conv': ('bf16', conv_any)}
ref = extract_features(bb, x[:256], 256, 'cpu', precision='fp32')
T = {k: [] for k in cfg}
for r in range(4):
    for k, (p, fn) in (list(cfg.items()) if r % 2 == 0 else list(cfg.items())[::-1]):
        with mock.patch.object(core, 'linear', fn):
            t = time.perf_counter(); f = extract_features(bb, x, 512, 'cpu', precision=p); T[k].append(time.perf_counter() - t)
            if r == 0: print(k, 'max diff vs fp32 (first 256)', (f[:256] - ref).abs().max().item(), flush=True)
print(m, len(x), 'images', {k: round(statistics.median(v), 3) for k, v in T.items()}, torch.get_num_threads(), 'threads')
