"""MAE: ssl_learn against the `lightly` package, same ViT size, mask ratio, epochs, batch and optimiser, in one run.

Both sides pre-train at the cpu tier (16,384 Fashion-MNIST images, 3 epochs, batch 256, AdamW lr 3e-3 betas
(0.9, 0.95) wd 0.05, warm-up 25% then cosine), a ViT of dim 96, 6 blocks, 3 heads, patch 4 (49 tokens), fixed
sin-cos positions, mask ratio 0.75, a decoder of width 64 with 2 blocks, the loss on per-patch-normalised pixels of
the masked patches.
- ours: `ssl_learn.learner.ssl_learner(pre, 'mae', 'cpu')` (batched augmentation on the device, fastai loop);
- theirs: a torchvision `VisionTransformer` (1-channel patch projection) wrapped in lightly's
  `MaskedVisionTransformerTorchvision`, lightly's `MAEDecoder`, `utils.random_token_mask`, `utils.patchify`,
  `utils.normalize_mean_var` (the norm-pix target), lightly's `MAETransform` per image in a 2-worker DataLoader,
  a plain PyTorch loop with the same schedule (`OneCycleLR`, cosine, 25% warm-up).
Then the same linear probe (ssl_learn.eval.linear.linear_eval: cached class-token features of the full training split,
standardised, 10 epochs, 3 seeds) on both encoders, and images/s of the training phase.
Writes results/comparisons/lightly/mae/seed<N>.json (N: --seed, default 0; it seeds the data split and both
sides' initialisation) with the ratios ours/theirs. Run from the repository root under the machine-wide lock:

    flock /tmp/ssl_cpu.lock .venv/bin/python -m experiments.compare_lightly_mae [--seed 0]

lightly is imported only after our side has trained (`--help` works without it).
"""
import argparse, math, time
import numpy as np, torch, torch.nn.functional as F
from torch import nn
from ssl_learn.core import get_tier, set_seed, atomic_save, provenance, peak_memory_mb
from ssl_learn.learner import ssl_learner
from ssl_learn.data import prepare_data
from ssl_learn.eval.linear import linear_eval
from ssl_learn.eval.knn import knn_eval
from ssl_learn.augment import to_float
from fastai.callback.core import Callback

ap = argparse.ArgumentParser(prog='python -m experiments.compare_lightly_mae', description=__doc__.split('\n')[0])
ap.add_argument('--epochs', type=int, default=None); ap.add_argument('--n_train', type=int, default=None)
ap.add_argument('--seed', type=int, default=0, help='data split and initial weights of both sides')
ap.add_argument('--workers', type=int, default=2); ap.add_argument('--out', default=None, help='default: results/comparisons/lightly/mae/seed<SEED>.json')
ap.add_argument('--probe_seeds', default='0,1,2'); ap.add_argument('--n_eval', type=int, default=None, help='subset the evaluation splits (smoke tests)')
a = ap.parse_args()
a.out = a.out or f'results/comparisons/lightly/mae/seed{a.seed}.json'

tier = get_tier('cpu', arch='vit_tiny', **{k: v for k, v in dict(epochs=a.epochs, n_train=a.n_train).items() if v})
pre, _, _, etrn, etst = prepare_data('fmnist', tier, seed=a.seed)
if a.n_eval: etrn, etst = etrn.subset(a.n_eval, seed=0), etst.subset(a.n_eval // 2, seed=0)
seeds = tuple(int(s) for s in a.probe_seeds.split(','))
LR, WD, BETAS, MASK = 3e-3, 0.05, (0.9, 0.95), 0.75

class TrainTime(Callback):
    def before_fit(self): self.secs = 0.
    def before_train(self): self.t = time.time()
    def after_train(self): self.secs += time.time() - self.t

# ---------------------------------------------------------------- ours
set_seed(a.seed)
tt = TrainTime()
learn = ssl_learner(pre, 'mae', tier, device='cpu', method_kw=dict(mask_ratio=MASK, lr=LR, wd=WD))
ours_model = learn.model
cfg = ours_model.backbone.config
dec = ours_model.decoder
dec_cfg = dict(dim=dec.embed.out_features, depth=len(dec.blocks), heads=dec.blocks[0].attn.heads)
print('ours:', cfg, 'decoder', dec_cfg, flush=True)
t0 = time.time()
with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(tier.epochs, learn.lr, cbs=[tt])
n_seen = len(pre) // tier.bs * tier.bs * tier.epochs
ours = dict(seconds_train=round(tt.secs, 1), seconds_total=round(time.time() - t0, 1), images_per_s=round(n_seen / tt.secs, 1),
            final_loss=float(learn.recorder.losses[-1]), peak_memory_mb=round(peak_memory_mb(), 1),
            n_params=sum(p.numel() for p in ours_model.parameters()))
print('ours trained', ours, flush=True)

# ---------------------------------------------------------------- theirs (lightly)
import lightly
from lightly.models import utils
from lightly.models.modules import MaskedVisionTransformerTorchvision, MAEDecoder
from lightly.transforms import MAETransform
from torchvision.models.vision_transformer import VisionTransformer
from PIL import Image

mean, std = ours_model.backbone.mean.flatten().tolist(), ours_model.backbone.std.flatten().tolist()

class LightlyMAE(nn.Module):
    "lightly's MAE recipe (its torchvision example), sized like ours."
    def __init__(self):
        super().__init__()
        p, d = cfg['patch_size'], cfg['dim']
        vit = VisionTransformer(image_size=cfg['img_size'], patch_size=p, num_layers=cfg['depth'], num_heads=cfg['heads'],
                                hidden_dim=d, mlp_dim=int(d * cfg['mlp_ratio']))
        vit.conv_proj = nn.Conv2d(cfg['in_chans'], d, p, p)                 # grey images
        vit.heads = nn.Identity()                                           # no classifier in pre-training
        self.patch_size, self.seq_len = p, vit.seq_length
        self.backbone = MaskedVisionTransformerTorchvision(vit=vit)
        self.decoder = MAEDecoder(seq_length=vit.seq_length, num_layers=dec_cfg['depth'], num_heads=dec_cfg['heads'],
                                  embed_input_dim=d, hidden_dim=dec_cfg['dim'], mlp_dim=dec_cfg['dim'] * 4,
                                  out_dim=p * p * cfg['in_chans'], dropout=0, attention_dropout=0)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_cfg['dim']))
    def forward(self, images):
        B = len(images)
        idx_keep, idx_mask = utils.random_token_mask(size=(B, self.seq_len), mask_ratio=MASK, device=images.device)
        x = self.backbone.encode(images=images, idx_keep=idx_keep)
        x = self.decoder.embed(x)
        xm = utils.repeat_token(self.mask_token, (B, self.seq_len))
        xm = utils.set_at_index(xm, idx_keep, x.type_as(xm))
        x = self.decoder.decode(xm)
        pred = self.decoder.predict(utils.get_at_index(x, idx_mask))
        target = utils.get_at_index(utils.patchify(images, self.patch_size), idx_mask - 1)
        return F.mse_loss(pred, utils.normalize_mean_var(target, dim=-1))

class PILSet(torch.utils.data.Dataset):
    def __init__(self, x, tf): self.x, self.tf = x, tf
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return self.tf(Image.fromarray(self.x[i, 0].numpy()))[0]

set_seed(a.seed)
theirs_model = LightlyMAE()
tf = MAETransform(input_size=cfg['img_size'], min_scale=0.2, normalize=dict(mean=mean, std=std))
dl = torch.utils.data.DataLoader(PILSet(pre.x, tf), batch_size=tier.bs, shuffle=True, drop_last=True,
                                 num_workers=a.workers, persistent_workers=a.workers > 0)
decay, no_decay = [], []
for n_, p_ in theirs_model.named_parameters():
    (no_decay if p_.ndim <= 1 or n_.endswith('.bias') or 'token' in n_ or 'pos_embedding' in n_ else decay).append(p_)
opt = torch.optim.AdamW([dict(params=decay, weight_decay=WD), dict(params=no_decay, weight_decay=0.)], lr=LR, betas=BETAS)
steps = len(dl) * tier.epochs
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.25, anneal_strategy='cos',
                                            div_factor=25., final_div_factor=1e5, cycle_momentum=False)
theirs_model.train()
losses, n_img, t_train = [], 0, 0.
for ep in range(tier.epochs):
    t = time.time()
    for xb in dl:
        loss = theirs_model(xb)
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        losses.append(loss.item()); n_img += len(xb)
    t_train += time.time() - t
    print(f'lightly epoch {ep}: loss {np.mean(losses[-len(dl):]):.4f}', flush=True)
theirs = dict(seconds_train=round(t_train, 1), images_per_s=round(n_img / t_train, 1), final_loss=float(np.mean(losses[-8:])),
              n_params=sum(p.numel() for p in theirs_model.parameters()), workers=a.workers, lightly=lightly.__version__)
print('theirs trained', theirs, flush=True)

class LightlyFeatures(nn.Module):
    "uint8 images → normalised → lightly's encoder → class token, for the shared protocols."
    def __init__(self, enc):
        super().__init__(); self.enc = enc
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1)); self.register_buffer('std', torch.tensor(std).view(1, -1, 1, 1))
        self.config = dict(in_chans=cfg['in_chans'])
    def forward(self, x): return self.enc((to_float(x) - self.mean) / self.std)

# ---------------------------------------------------------------- the same probes on both
res = dict(setting=f"cpu tier: {len(pre)} images x {tier.epochs} epochs, bs {tier.bs}, ViT dim {cfg['dim']} depth {cfg['depth']} heads {cfg['heads']} "
                   f"patch {cfg['patch_size']}, decoder {dec_cfg}, mask {MASK}, AdamW lr {LR} wd {WD} betas {BETAS}, 25% warm-up + cosine; "
                   f"probe: linear on frozen class-token features, {len(etrn)} train / {len(etst)} test, 10 epochs, seeds {seeds}; kNN k=20,200 T=0.07",
           seed=a.seed, ours=ours, theirs=theirs)
for name, bb in (('ours', ours_model.backbone), ('theirs', LightlyFeatures(theirs_model.backbone))):
    t = time.time()
    lin = linear_eval(bb, etrn, etst, epochs=10, lr=0.1, seeds=seeds)[0]
    knn = {r['k']: r['value'] for r in knn_eval(bb, etrn, etst, ks=(20, 200))}
    res[name].update(linear_top1=lin['value'], linear_std=lin['std'], knn20=knn[20], knn200=knn[200], seconds_eval=round(time.time() - t, 1))
    print(name, res[name], flush=True)
res.update(ratio_images_per_s=round(ours['images_per_s'] / theirs['images_per_s'], 3),
           ratio_linear_top1=round(res['ours']['linear_top1'] / res['theirs']['linear_top1'], 4),
           targets=dict(ratio_images_per_s='>= 1.3', ratio_linear_top1='>= 1.0'),
           peak_memory_mb=round(peak_memory_mb(), 1), **provenance())
res['met'] = dict(images_per_s=res['ratio_images_per_s'] >= 1.3, linear_top1=res['ratio_linear_top1'] >= 1.0)
atomic_save(res, a.out)
print(f"wrote {a.out}: images/s ratio {res['ratio_images_per_s']}, linear top-1 ratio {res['ratio_linear_top1']}")
