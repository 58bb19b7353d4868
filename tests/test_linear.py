"Linear probes and semi-supervised fine-tuning: results that could be wrong, and errors on bad input."
import pytest, torch
from torch import nn
import ssl_learn.eval.linear as L
from ssl_learn.eval.linear import linear_eval, mhead_eval, FeatureDL, confusion_matrix, plot_confusion, plot_stage_accuracy
from ssl_learn.eval.semi import semi_eval, semi_learner, label_subset
from ssl_learn.data import check_labeled
from ssl_learn.data import ImageData, load_fmnist
from ssl_learn.models import resnet18

class Pixels(nn.Module):
    "A stand-in backbone whose feature is the image's pixels."
    def forward(self, x): return x.float().flatten(1) / 255

def separable(n, n_cls=3, seed=0):
    "Images whose brightness gives the class: linearly separable pixel features."
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % n_cls
    x = (40 + 70*y).view(-1, 1, 1, 1) + torch.randint(-15, 16, (n, 1, 4, 4), generator=g)
    return ImageData(x.clamp(0, 255).to(torch.uint8), y)

def random_labels(n, n_cls=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageData(torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8), torch.randint(0, n_cls, (n,), generator=g))

@pytest.fixture(scope='module')
def fm():
    return load_fmnist('train').subset(300), load_fmnist('test').subset(100)

@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    return resnet18(in_chans=1, width=4)

def test_linear_separable_reaches_100():
    r, = linear_eval(Pixels(), separable(300), separable(90, seed=1), epochs=5, lr=0.1, bs=64, device='cpu')
    assert r['value'] >= 99 and all(a >= 98 for a in r['per_seed'])
    assert r['seeds'] == [0, 1, 2] and len(r['per_seed']) == 3
    assert abs(r['value'] - sum(r['per_seed'])/3) < 0.01
    assert 'epochs=5' in r['setting'] and 'lr=0.1' in r['setting'] and r['epoch_reported'] == 'final'
    cm = torch.tensor(r['confusion']); assert cm.sum() == 90 and cm.trace() >= 89

def test_linear_random_labels_at_chance():
    "Random pixels with random labels: nothing to learn, so the test score must stay near chance (25%)."
    r, = linear_eval(Pixels(), random_labels(400), random_labels(200, seed=1), epochs=4, lr=0.1, seeds=(0,), bs=64, device='cpu')
    assert r['value'] < 40

def test_linear_repeatable_and_seed_dependent():
    a, = linear_eval(Pixels(), random_labels(200), random_labels(100, seed=1), epochs=2, seeds=(0, 1, 2), bs=50, device='cpu')
    b, = linear_eval(Pixels(), random_labels(200), random_labels(100, seed=1), epochs=2, seeds=(0, 1, 2), bs=50, device='cpu')
    assert a['per_seed'] == b['per_seed']
    assert len(set(a['per_seed'])) > 1 and a['std'] > 0

def test_linear_extracts_features_once(monkeypatch):
    calls = []
    real = L.extract_features
    monkeypatch.setattr(L, 'extract_features', lambda *a, **k: calls.append(1) or real(*a, **k))
    linear_eval(Pixels(), separable(60), separable(30, seed=1), epochs=1, seeds=(0, 1, 2), bs=16, device='cpu')
    assert len(calls) == 2   # train and test, once, for all three seeds

def test_linear_with_augmentation_runs(fm, tiny):
    trn, tst = fm
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    r, = linear_eval(tiny, trn, tst, epochs=1, seeds=(0,), bs=64, views='basic', device='cpu')
    assert 'aug=basic' in r['setting'] and 10 < r['value'] <= 100
    assert all(torch.equal(v, before[k]) for k, v in tiny.state_dict().items())   # frozen: weights and BN statistics

def test_one_class_missing_labels_too_few(tiny):
    x = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    one, two = ImageData(x, torch.zeros(40, dtype=torch.long)), ImageData(x, torch.arange(40) % 2)
    for f in (linear_eval, mhead_eval, semi_eval):
        with pytest.raises(ValueError, match='at least 2 classes'): f(tiny, one, two)
        with pytest.raises(ValueError, match='needs labels'): f(tiny, ImageData(x), two)
        with pytest.raises(ValueError, match='needs labels'): f(tiny, two, ImageData(x))
        with pytest.raises(ValueError, match='too few examples'): f(tiny, ImageData(x[:3], torch.tensor([0, 1, 2])), two)
    with pytest.raises(ValueError, match='channel'): linear_eval(tiny, ImageData(x.expand(-1, 3, -1, -1).contiguous(), two.y), ImageData(x.expand(-1, 3, -1, -1).contiguous(), two.y))

def test_mhead_rows(fm, tiny):
    trn, tst = fm
    rows = mhead_eval(tiny, trn, tst, target_dim=128, epochs=1, seeds=(0, 1), bs=32, device='cpu')
    st = rows[:5]
    assert [r['stage'] for r in st] == [1, 2, 3, 4, 5]
    assert [r['setting'].split(',')[0] for r in st] == [f'feature{i}' for i in range(1, 6)]
    assert all(r['feature_dim'] <= 128 * 2 and f"pool={r['pool']}x{r['pool']}" in r['setting'] for r in st)
    assert all(len(r['per_seed']) == 2 and r['val_top1'] is not None for r in st)
    val, test = rows[5], rows[6]
    assert 'val' in val['selected_on'] and val['best_stage'] == 1 + max(range(5), key=lambda i: st[i]['val_top1'])
    assert val['value'] == st[val['best_stage'] - 1]['value']
    assert 'test' in test['selected_on'] and test['value'] == max(r['value'] for r in st)
    assert st[0]['n_train'] + st[0]['n_val'] == len(trn)
    plot_stage_accuracy(rows)

def test_mhead_separable():
    "Each head sees its own stage; on separable features every stage's head is near 100%."
    class Stages(nn.Module):
        def forward(self, x, stages=False):
            f = x.float() / 255
            return [f.expand(-1, 8, -1, -1)] * 5 if stages else f.flatten(1)
    rows = mhead_eval(Stages(), separable(300), separable(90, seed=1), pool_sizes=[4]*5, epochs=10, lr=0.1, seeds=(0,), bs=64, device='cpu')
    assert all(r['value'] >= 97 for r in rows[:5])

def test_label_subset_balanced(fm):
    trn, _ = fm
    for frac in (0.05, 0.1, 0.37):
        s = label_subset(trn, frac, seed=3)
        c = torch.bincount(s.y, minlength=10)
        assert len(s) == round(frac * len(trn)) and c.max() - c.min() <= 1
    with pytest.raises(ValueError, match='too few examples'): label_subset(trn, 0.01)   # 3 labels < 10 classes
    with pytest.raises(ValueError, match='fraction'): label_subset(trn, 1.5)

def test_semi_rows_and_backbone_untouched(fm, tiny):
    trn, tst = fm
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    rows = semi_eval(tiny, trn, tst, fracs=(0.1, 0.5), epochs=1, lrs=(0.1, 0.01), bs=50, device='cpu')
    assert [(r['frac'], r['lr_head']) for r in rows] == [(0.1, 0.1), (0.1, 0.01), (0.5, 0.1), (0.5, 0.01)]
    assert [r['n_labels'] for r in rows] == [30, 30, 150, 150]
    assert all(r['lr_backbone'] == r['lr_head'] / 10 and 0 <= r['value'] <= 100 for r in rows)
    assert all(torch.equal(v, before[k]) for k, v in tiny.state_dict().items())

def test_semi_discriminative_lrs(fm, tiny):
    learn = semi_learner(tiny, label_subset(fm[0], 0.1), 10, lr=0.1, lr_mult=10, device='cpu')
    learn.create_opt(); learn.opt.set_hyper('lr', slice(0.01, 0.1))
    bb, head = learn.opt.param_lists
    assert len(bb) == len(list(tiny.parameters())) and len(head) == 2   # backbone group, then the linear head
    assert [h['lr'] for h in learn.opt.hypers] == [0.01, 0.1]
    assert all(p.requires_grad for p in bb)

def test_feature_dl_rows():
    xs = [torch.arange(10).view(10, 1).float(), torch.arange(10).view(10, 1).half() * 2]
    dl = FeatureDL(xs, torch.arange(10), idx=torch.tensor([1, 3, 5, 7]), bs=3, shuffle=True)
    got = torch.cat([b[-1] for b in dl])
    assert sorted(got.tolist()) == [1, 3, 5, 7]
    for a, b2, y in dl: assert torch.equal(a[:, 0], y.float()) and torch.equal(b2[:, 0].float(), 2 * y.float())

def test_confusion_matrix():
    y, p = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    plot_confusion(cm, ['a', 'b', 'c'])

def test_augment_only_in_training(fm, tiny):
    from ssl_learn.eval.linear import fit_sched
    calls = []
    def views(x): calls.append(len(x)); return x.float() / 255
    lab = label_subset(fm[0], 0.2)   # 60 labels
    learn = semi_learner(tiny, lab, 10, views=views, bs=20, device='cpu')
    fit_sched(learn, 1, slice(0.01, 0.1))
    assert calls == [20, 20, 20]      # the three training batches; the validation batch (60 images) untouched

def test_mhead_feature_memory_full_fmnist():
    "The cached multi-head features of the full Fashion-MNIST (70,000 images) at the gpu tier's width fit well under 4 GB."
    from ssl_learn.features import stage_pool_sizes
    bb = resnet18(in_chans=1, width=64)
    sizes = stage_pool_sizes(bb, (1, 28, 28), 2048)
    dims = [c * p * p for c, p in zip(bb.stage_dims, sizes)]
    assert all(1024 <= d <= 4096 for d in dims)
    gb = 70_000 * sum(dims) * 2 / 1e9   # float16
    assert gb < 2.0, (dims, gb)

def test_mhead_refuses_a_cache_over_budget(fm, tiny):
    trn, tst = fm
    with pytest.raises(ValueError, match='max_gb'): mhead_eval(tiny, trn, tst, target_dim=512, max_gb=1e-4, device='cpu')
