"""The checks behind 26_methods.simclr's "the two sides compute the same thing" (the SimCLR comparison with lightly).

1. training loop: from the same initial weights and the same 8 batches of views, our fastai Learner and the plain
   PyTorch loop experiments/compare_lightly.py runs for lightly (SGD, fastai's one-cycle, decoupled wd, none on BN/bias)
   give the same step losses;
2. loss: ssl_learn's nt_xent against lightly's NTXentLoss on random embeddings (value and gradients);
3. memory format on the CPU: relative error against float64 of BatchNorm2d and of the cpu-tier backbone's gradients,
   default (contiguous) layout against channels_last;
4. jitter order: the share of pixels at 1 after colour jitter alone (p=1) on 4,096 Fashion-MNIST images, for PIL
   (torchvision's random order), ours (brightness then contrast) and ours with a random order.

Usage (from the repository root): python -m experiments.simclr_checks [OUT]   (OUT: results/ablations/simclr/checks.json)
"""
import argparse, copy, json
from pathlib import Path
import torch, torch.nn as nn
from experiments import compare_lightly as cl
from experiments.simclr_aug_ablation import OrderedJitter
from fastai.callback.core import Callback
from ssl_learn.core import get_tier, set_seed, provenance, atomic_save
from ssl_learn.data import get_data
from ssl_learn.learner import ssl_learner
from ssl_learn.data import prepare_data
from ssl_learn.models import make_backbone
from ssl_learn.augment import view_preset, ColorJitter, to_float
from ssl_learn.losses import nt_xent


def loops(steps=8):
    tier = get_tier('cpu', epochs=1, bs=256, n_train=256 * steps)
    pre = prepare_data('fmnist', tier, seed=0)[0]
    set_seed(0)
    learn = ssl_learner(pre, 'simclr', tier)
    state0 = copy.deepcopy(learn.model.state_dict())
    perm = torch.randperm(len(pre), generator=torch.Generator().manual_seed(1))
    vp = view_preset('simclr', 28); torch.manual_seed(5)
    V = [tuple(vp(pre.x[perm[i*256:(i+1)*256]]) for _ in range(2)) for i in range(steps)]
    class Fixed(Callback):
        order = 0
        def before_fit(self): self.i, self.losses = 0, []
        def before_batch(self):
            if self.training: self.learn.xb = tuple(v.contiguous(memory_format=torch.channels_last) for v in V[self.i]); self.i += 1
        def after_loss(self):
            if self.training: self.losses.append(round(float(self.learn.loss.detach()), 4))
    fx = Fixed(); learn.fit_one_cycle(1, learn.lr, cbs=[fx])
    model = copy.deepcopy(learn.model); model.load_state_dict(state0); model.train()
    opt, manual = cl.PlainSGD(model, tier.lr, tier.wd), []
    for i, (lr, mom) in enumerate(cl._schedules(tier.lr, steps)):
        loss = model.loss(model(*V[i]))
        opt.step(loss, lr, mom); manual.append(round(loss.item(), 4))
    no_wd = sum(1 for p in learn.model.parameters() if not learn.opt.state.get(p, {}).get('do_wd', True))
    return dict(fastai=fx.losses, plain_loop=manual, equal=fx.losses == manual, fastai_no_wd_tensors=no_wd, plain_no_wd_tensors=len(opt.no_decay))


def losses():
    from lightly.loss import NTXentLoss
    torch.manual_seed(0)
    z1, z2 = torch.randn(256, 128, requires_grad=True), torch.randn(256, 128, requires_grad=True)
    a = nt_xent(z1, z2, 0.1); ga = torch.autograd.grad(a, [z1, z2])
    b = NTXentLoss(temperature=0.1)(z1, z2); gb = torch.autograd.grad(b, [z1, z2])
    return dict(ours=a.item(), lightly=b.item(), max_abs_grad_diff=max((x - y).abs().max().item() for x, y in zip(ga, gb)))


def _rel(a, b): return ((a.double() - b).norm() / b.norm()).item()


def memory_format():
    torch.manual_seed(0)
    bn, x = nn.BatchNorm2d(64), torch.randn(256, 64, 14, 14) * 3 + 1
    out = {}
    ref = copy.deepcopy(bn).double(); xr = x.double().requires_grad_(); g = torch.randn_like(x)
    yr = ref(xr); (yr * g.double()).sum().backward()
    for name, fmt in (('contiguous', torch.contiguous_format), ('channels_last', torch.channels_last)):
        m = copy.deepcopy(bn).to(memory_format=fmt); xx = x.clone().contiguous(memory_format=fmt).requires_grad_()
        y = m(xx); (y * g).sum().backward()
        out[f'batchnorm_{name}'] = dict(output=_rel(y, yr), input_grad=_rel(xx.grad, xr.grad), weight_grad=_rel(m.weight.grad, ref.weight.grad))
    tier = get_tier('cpu', n_train=2048); pre = prepare_data('fmnist', tier)[0]
    b = make_backbone(tier, pre); b64 = copy.deepcopy(b).double(); xi = torch.rand(256, 1, 28, 28)
    b64(xi.double()).pow(2).sum().backward()
    g64 = torch.cat([p.grad.flatten() for p in b64.parameters()])
    for name, fmt in (('contiguous', torch.contiguous_format), ('channels_last', torch.channels_last)):
        m = copy.deepcopy(b).to(memory_format=fmt)
        m(xi.contiguous(memory_format=fmt)).pow(2).sum().backward()
        out[f'backbone_grad_{name}'] = _rel(torch.cat([p.grad.flatten() for p in m.parameters()]), g64)
    return out


def jitter(n=4096):
    from PIL import Image
    from torchvision.transforms import v2 as T
    x = get_data('fmnist')[0].x[:n]; torch.manual_seed(0)
    tf = T.Compose([T.ColorJitter(0.8, 0.8, 0.8, 0.2), T.ToImage(), T.ToDtype(torch.float32, scale=True)])
    pil = torch.stack([tf(Image.fromarray(x[i, 0].numpy(), mode='L')) for i in range(n)])
    at1 = lambda y: round((y >= 0.999).float().mean().item(), 4)
    return dict(n_images=n, share_of_pixels_at_1=dict(pil_random_order=at1(pil), ours_fixed_order=at1(ColorJitter(0.8, 0.8, 0.8, 0.2, p=1.0)(to_float(x))),
                                                      ours_random_order=at1(OrderedJitter(0.8, 0.8, 0.8, 0.2, p=1.0)(to_float(x)))))


def main():
    ap = argparse.ArgumentParser(prog='python -m experiments.simclr_checks', description=__doc__.split('\n')[0])
    ap.add_argument('out', nargs='?', default='results/ablations/simclr/checks.json')
    out = Path(ap.parse_args().out)
    res = dict(loops=loops(), loss=losses(), memory_format=memory_format(), jitter=jitter(), threads=torch.get_num_threads(), **provenance())
    atomic_save(res, out)
    print(json.dumps({k: v for k, v in res.items() if k in ('loops', 'loss', 'memory_format', 'jitter')}, indent=1))


if __name__ == '__main__':
    main()
