"""The kNN monitor's bf16 feature extraction of the zoo MAE ViT (2,048 bank images, batch 512): as the library runs it
(bf16 autocast: F.linear, attention in float32), with the linear layers as 1×1 convolutions under autocast too, and
with attention in bf16 as well; alternating, medians of 4, seconds. Usage (repository root): python
results/foundation/dropped/vit_monitor_bf16_conv.py [method]"""
import sys, time, statistics, torch
from unittest import mock
import ssl_learn.core as core, ssl_learn.vit as vit
from ssl_learn.data import prepare_data
from ssl_learn.models import load_backbone
from ssl_learn.features import extract_features
from ssl_learn.method import method_tier
F = torch.nn.functional
def conv_any(x, weight, bias=None):
    if x.device.type != 'cpu' or weight.ndim != 2 or not x.numel(): return F.linear(x, weight, bias)
    (N, K), M = weight.shape, x.numel() // weight.shape[1]
    B = 16 if M % 16 == 0 else 1
    y = F.conv2d(x.reshape(B, M // B, 1, K).permute(0, 3, 1, 2), weight.reshape(N, K, 1, 1), bias)
    return y.permute(0, 2, 3, 1).reshape(*x.shape[:-1], N)
def attn_fwd(self, x):
    B, L, D = x.shape
    q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
    a = F.scaled_dot_product_attention(q, k, v)
    return self.proj(a.transpose(1, 2).reshape(B, L, D))
m = sys.argv[1] if len(sys.argv) > 1 else 'mae'
bb = load_backbone(f'results/bench/fmnist/zoo/backbones/{m}.pth').eval()
tier = method_tier(m, 'zoo'); pre, bank, query, *_ = prepare_data('fmnist', tier)
x = bank.x[:2048]
ref = extract_features(bb, x[:256], 256, 'cpu', precision='fp32')
cfg = {'bf16 now': [], 'bf16 conv': [mock.patch.object(core, 'linear', conv_any)],
       'bf16 conv+bf16 attn': [mock.patch.object(core, 'linear', conv_any), mock.patch.object(vit.Attention, 'forward', attn_fwd)]}
T = {k: [] for k in cfg}
for r in range(4):
    for k in (list(cfg) if r % 2 == 0 else list(cfg)[::-1]):
        for pch in cfg[k]: pch.start()
        t = time.perf_counter(); f = extract_features(bb, x, 512, 'cpu', precision='bf16'); T[k].append(time.perf_counter() - t)
        for pch in cfg[k]: pch.stop()
        if r == 0: print(k, 'max diff vs fp32 (first 256)', (f[:256] - ref).abs().max().item(), flush=True)
print(m, len(x), 'images', {k: round(statistics.median(v), 3) for k, v in T.items()}, torch.get_num_threads(), 'threads')
