"ViT backbones, MAE and MoCo v3: masking, un-shuffling, the masked-only loss, shapes, training steps, evaluation on a ViT."
import pytest, torch
from ssl_learn.vit import ViT, make_vit, vit_tiny, sincos_2d
from ssl_learn.models import load_backbone, save_backbone, build_backbone, resnet18
from ssl_learn.methods.mae import MAE, random_masking, unshuffle, patchify, unpatchify, mae_loss, MAEDecoder
from ssl_learn.methods.moco_v3 import MoCoV3, moco_v3_loss
from ssl_learn.methods.byol import byol_views
from ssl_learn.augment import view_preset


@pytest.fixture(scope='module')
def fm():
    from ssl_learn.data import load_fmnist
    return load_fmnist('train').x[:512]


@pytest.mark.parametrize('n,ratio', [(49, 0.75), (196, 0.75), (64, 0.5), (49, 0.9), (10, 0.0)])
def test_masking_keeps_exact_count_per_sample(n, ratio):
    t = torch.randn(16, n, 8)
    vis, mask, ids = random_masking(t, ratio)
    keep = int(n * (1 - ratio))
    assert vis.shape == (16, keep, 8)
    assert (mask.sum(1) == n - keep).all() and set(mask.unique().tolist()) <= {0., 1.}
    for b in range(16):   # the visible tokens are exactly the unmasked ones, in shuffled order
        kept = t[b, mask[b] == 0]
        assert sorted(vis[b, :, 0].tolist()) == sorted(kept[:, 0].tolist())
    if 0 < ratio and n > 10:
        assert len({tuple(r.tolist()) for r in mask}) > 1   # one mask per sample, not shared across the batch


def test_unshuffle_restores_order():
    t = torch.randn(4, 49, 6)
    vis, mask, ids = random_masking(t, 0.75)
    # put the dropped tokens back behind the visible ones (the order the decoder sees) and un-shuffle
    shuffled = t.gather(1, ids.argsort(1)[..., None].expand(-1, -1, 6))
    assert torch.equal(shuffled[:, :12], vis)
    assert torch.equal(unshuffle(shuffled, ids), t)
    assert torch.equal(mask, (unshuffle(torch.cat([torch.zeros(4, 12, 1), torch.ones(4, 37, 1)], 1), ids))[..., 0])


def test_masking_bad_input():
    with pytest.raises(ValueError): random_masking(torch.randn(2, 49, 4), 1.0)
    with pytest.raises(ValueError): random_masking(torch.randn(2, 4, 49, 4), 0.5)
    with pytest.raises(ValueError): random_masking(torch.randn(2, 3, 4), 0.9)   # int(3·0.1) = 0 visible


def test_loss_counts_only_masked_patches():
    torch.manual_seed(0)
    tg, pr = torch.randn(3, 49, 16), torch.randn(3, 49, 16)
    _, mk, _ = random_masking(tg, 0.75)
    l = mae_loss(pr, tg, mk)
    vis = ~mk.bool()
    pr2 = pr.clone(); pr2[vis] = 1e3                      # wild predictions on visible patches change nothing
    assert torch.allclose(mae_loss(pr2, tg, mk), l)
    pr3 = pr.clone(); pr3[mk.bool()] += 0.5               # on masked patches they do
    assert not torch.allclose(mae_loss(pr3, tg, mk), l)
    # by hand: mean over masked patches of the per-patch MSE to the normalised target
    tn = (tg - tg.mean(-1, keepdim=True)) / (tg.var(-1, keepdim=True) + 1e-6) ** .5
    ref = ((pr - tn) ** 2).mean(-1)[mk.bool()].mean()
    assert torch.allclose(l, ref, atol=1e-6)
    assert torch.allclose(mae_loss(pr, tg, mk, norm_pix=False), ((pr - tg) ** 2).mean(-1)[mk.bool()].mean(), atol=1e-6)
    with pytest.raises(ValueError): mae_loss(pr, tg[:, :48], mk)


def test_patchify_roundtrip():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(unpatchify(patchify(x, 4), 4, 3), x)
    with pytest.raises(ValueError): patchify(torch.rand(1, 1, 10, 10), 4)


def test_vit_shapes_and_stages():
    m = vit_tiny(28, 1)
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert m(x).shape == (3, 192) and m.config['arch'] == 'vit' and m.patch_size == 4 and m.grid == 7
    fs = m(x, stages=True)
    assert len(fs) == 5 and all(f.shape == (3, 192, 7, 7) for f in fs)
    z = m.encode(m.patch_tokens(x))
    assert z.shape == (3, 50, 192)
    assert torch.allclose(m(x, pool='mean'), z[:, 1:].mean(1), atol=1e-6) and torch.allclose(m(x), z[:, 0], atol=1e-6)
    assert not any(n == 'pos_embed' for n, _ in m.named_parameters())
    assert torch.allclose(m.pos_embed, sincos_2d(192, 7, 7))
    assert make_vit('vit_small', 224, 3).patch_size == 16 and make_vit('vit_small', 96, 3).grid == 6
    c = make_vit('vit_tiny', 28, 1, width=32)
    assert (c.out_dim, len(c.blocks), c.blocks[0].attn.heads) == (96, 6, 3)
    with pytest.raises(ValueError): ViT(img_size=28, patch_size=5)
    with pytest.raises(ValueError): m.pool = 'max'


def test_mae_shapes_encoder_decoder():
    bb = vit_tiny(28, 1, width=32)
    m = MAE(bb)
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    vis, mask, ids = random_masking(bb.patch_tokens(x), 0.75)
    z = bb.encode(vis)
    assert vis.shape == (4, 12, 96) and z.shape == (4, 13, 96)
    out = m.decoder(z, ids)
    assert out.shape == (4, 49, 16)
    pred, target, mask = m(x)
    assert pred.shape == target.shape == (4, 49, 16) and (mask.sum(1) == 37).all()
    assert (m.decoder.embed.out_features, len(m.decoder.blocks)) == (64, 2)
    # the model zoo's check values: ViT-B/16-shaped at 224 px (one block is enough for the shapes)
    vb = ViT(224, 16, 3, dim=768, depth=1, heads=12)
    vis, mask, ids = random_masking(vb.patch_tokens(torch.zeros(1, 3, 224, 224)), 0.75)
    z = vb.encode(vis)
    assert z.shape == (1, 50, 768)
    dec = MAEDecoder(196, 768, 16 * 16 * 3, dim=512, depth=1, heads=16)
    assert dec(z, ids).shape == (1, 196, 768) and mask.sum() == 147
    with pytest.raises(ValueError): MAE(resnet18(in_chans=1, width=8))


def test_mae_loss_falls_on_real_images(fm):
    torch.manual_seed(0)
    m = MAE(vit_tiny(28, 1, width=16))
    views = view_preset('basic', 28)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        xb = views(fm[torch.randint(0, len(fm), (64,), generator=g)])
        loss = m.loss(m(xb)); opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert sum(losses[-8:]) / 8 < 0.85 * sum(losses[:8]) / 8, losses


def test_moco_v3_vit_and_resnet_step(fm):
    torch.manual_seed(0)
    v1, v2 = byol_views(28)
    for bb in (vit_tiny(28, 1, width=16), resnet18(in_chans=1, width=8)):
        m = MoCoV3(bb, dim=32, hidden=64)
        if isinstance(bb, ViT):
            assert not any(p.requires_grad for p in bb.patch_embed.parameters()) and m.T == 0.2
        else: assert m.T == 1.0
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
        xb = fm[:32]
        before = [p.clone() for p in m.momentum_backbone.parameters()]
        loss = m.loss(m(v1(xb), v2(xb))); opt.zero_grad(); loss.backward(); opt.step(); m.on_step(0.)
        assert torch.isfinite(loss)
        assert all(p.grad is None for p in m.momentum_backbone.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, m.momentum_backbone.parameters()))   # EMA moved
    q = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    assert moco_v3_loss(q, q, q, q, T=0.01) < 1e-3


def test_save_load_vit_and_default_arch(tmp_path):
    m = vit_tiny(28, 1, width=32, pool='mean')
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    p = save_backbone(m, tmp_path/'vit.pth')
    m2 = load_backbone(p)
    assert isinstance(m2, ViT) and m2.pool == 'mean' and torch.equal(m.eval()(x), m2.eval()(x))
    assert isinstance(build_backbone(m.config), ViT) and build_backbone(resnet18(in_chans=1).config).config['depth'] == 18
    from ssl_learn.core import get_tier
    from ssl_learn.method import method_tier
    from ssl_learn.models import make_backbone
    from ssl_learn.data import load_fmnist
    assert method_tier('mae', 'cpu').arch == 'vit_tiny'
    assert method_tier('moco_v3', 'cpu', arch='resnet18').arch == 'resnet18'
    assert method_tier('rotation', 'cpu').arch == 'resnet18'
    d = load_fmnist('test').subset(100)
    assert isinstance(make_backbone(get_tier('cpu', arch='vit_tiny'), d), ViT)
    with pytest.raises(ValueError): make_backbone(get_tier('cpu', arch='vgg16'), d)


def test_evaluation_suite_on_vit():
    from ssl_learn.eval.protocols import evaluate
    torch.manual_seed(0)
    bb = vit_tiny(28, 1, width=16)
    rows = evaluate(bb, 'knn,linear,mhead,svm,lowshot,semi', 'fmnist', 'test',
                    overrides=dict(svm=dict(n_train=100, stages=(0, 4)), lowshot=dict(ks=(1, 2))))
    protos = {r['protocol'] for r in rows}
    assert protos >= {'knn', 'linear', 'mhead', 'svm', 'lowshot', 'semi'}
    assert all(0 <= r['value'] <= 100 for r in rows if r['metric'] == 'top1')
    assert len([r for r in rows if r['protocol'] == 'mhead' and r.get('stage')]) == 5


def test_bf16_autocast_runs_attention_in_float32_on_cpu(monkeypatch):
    "The CPU's bf16 flash-attention backward was ~10x slower than fp32 (MAE's profile): attention stays float32."
    import torch.nn.functional as F
    import ssl_learn.vit as V
    seen, sdpa = [], F.scaled_dot_product_attention
    def spy(q, k, v, *a, **kw): seen.append(q.dtype); return sdpa(q, k, v, *a, **kw)
    monkeypatch.setattr(V.F, 'scaled_dot_product_attention', spy)
    att = V.Attention(16, 2)
    with torch.autocast('cpu', dtype=torch.bfloat16): out = att(torch.randn(2, 5, 16))
    assert seen == [torch.float32] and out.shape == (2, 5, 16)
    seen.clear(); att(torch.randn(2, 5, 16)); assert seen == [torch.float32]     # fp32 as before
