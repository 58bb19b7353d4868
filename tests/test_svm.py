"SVM and low-shot SVM protocols: AP formulas, perfect scores on separable data, honest cost choice, bad input."
import numpy as np, pytest, torch, torch.nn.functional as F
from torch import nn
from ssl_learn.data import ImageData
from ssl_learn.eval.svm import (voc_ap, svm_on_features, svm_eval, lowshot_eval, lowshot_indices, lowshot_seed, choose_costs,
                               ovr_svms, l2_normalise, plot_lowshot, plot_svm_stages)

CLASSES = ['a', 'b', 'c']

class ClassCoded(nn.Module):
    "A fake backbone whose 5 stage maps carry the label (written in the first pixel) plus the other pixels as noise."
    def __init__(self, n_classes=3, noise=0.5):
        super().__init__()
        self.dummy, self.n, self.noise = nn.Parameter(torch.zeros(1)), n_classes, noise
    def forward(self, x, stages=False):
        oh = F.one_hot(x[:, 0, 0, 0].long() // 50, self.n).float()
        rest = x[:, 0].flatten(1)[:, 1:17].float() / 255 * self.noise
        f = torch.cat([oh, rest], 1)[:, :, None, None].expand(-1, -1, 2, 2) + 0 * self.dummy
        return [f] * 5 if stages else f.mean((2, 3))

def toy(n_per_class=(20, 20, 20), seed=0, name='toy'):
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    x = torch.randint(0, 256, (len(y), 1, 6, 6), dtype=torch.uint8, generator=g)
    x[:, 0, 0, 0] = (y * 50).to(torch.uint8)
    return ImageData(x, y, CLASSES, name)

@pytest.fixture
def data(): return toy((30, 30, 30), 0, 'toy-train'), toy((10, 10, 10), 1, 'toy-test')

# ---- average precision ----
def test_voc_ap_hand_computed():
    # ranking (neg, pos, pos): interpolated precision 2/3 everywhere; step sum 1/2·1/2 + 1/2·2/3
    assert voc_ap([0.9, 0.5, 0.1], [0, 1, 1], 'all') == pytest.approx(2/3)
    assert voc_ap([0.9, 0.5, 0.1], [0, 1, 1], '11point') == pytest.approx(2/3)
    assert voc_ap([0.9, 0.5, 0.1], [0, 1, 1], 'sklearn') == pytest.approx(7/12)
    # ranking (pos, neg, pos, neg, pos): precisions 1, 2/3, 3/5 at recalls 1/3, 2/3, 1
    s, l = [.9, .8, .7, .6, .5], [1, 0, 1, 0, 1]
    assert voc_ap(s, l, 'all') == pytest.approx((1 + 2/3 + 3/5) / 3)
    assert voc_ap(s, l, '11point') == pytest.approx((4 * 1 + 3 * 2/3 + 4 * 3/5) / 11)
    assert voc_ap([3, 2, 1], [1, 1, 0]) == 1.0 and np.isnan(voc_ap([1, 2], [0, 0]))
    with pytest.raises(ValueError, match='AP method'): voc_ap([1], [1], 'bogus')

def test_interpolated_ap_never_below_step_ap():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s, l = rng.normal(size=50), rng.integers(0, 2, 50)
        assert voc_ap(s, l, 'all') >= voc_ap(s, l, 'sklearn') - 1e-12

# ---- SVM ----
def test_separable_features_are_perfect():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 32)) * 4
    ytr, yte = rng.integers(0, 5, 150), rng.integers(0, 5, 100)
    r = svm_on_features(centres[ytr] + rng.normal(size=(150, 32)), ytr, centres[yte] + rng.normal(size=(100, 32)), yte,
                        costs=(0.1, 1, 10), cv=3)
    assert r['top1'] == 100 and r['mAP'] == pytest.approx(100) and r['mAP_11point'] == pytest.approx(100)
    assert len(r['chosen_costs']) == 5 and set(r['chosen_costs']) <= {0.1, 1, 10}

def test_l2_normalise():
    x = l2_normalise(torch.tensor([[3., 4.], [0., 0.]], dtype=torch.float16))
    assert x.dtype == np.float64 and np.allclose(np.linalg.norm(x[0]), 1, atol=1e-4) and (x[1] == 0).all()

def test_svm_eval_rows(data):
    trn, tst = data
    rows = svm_eval(ClassCoded(), trn, tst, costs=(0.1, 1.0), stages=(0, 4), cv=3)
    per = [r for r in rows if r['stage'] != 'best']
    assert len(per) == 2 * 4 and {r['metric'] for r in per} == {'top1', 'mAP', 'mAP_11point', 'mAP_sklearn'}
    assert all(r['value'] == 100 for r in per if r['metric'] in ('top1', 'mAP'))
    best = [r for r in rows if r['stage'] == 'best']
    assert len(best) == 2 and best[0]['best_stage'] in (0, 4) and best[0]['best_by'] == 'training CV mAP'
    r = per[0]
    assert r['n_train'] == 90 and r['n_test'] == 30 and r['cv'] == 3 and r['costs'] == [0.1, 1.0] and r['loss'] == 'squared_hinge'
    rows = svm_eval(ClassCoded(), trn, tst, costs=(1.0,), stages=(4,), n_train=45)
    assert rows[0]['n_train'] == 45

def test_cost_choice_never_sees_test(data):
    "Permuting the test labels, or replacing the test images, changes scores but never the chosen costs."
    trn, tst = data
    bb = ClassCoded(noise=3.0)          # noisy, so that the costs actually differ in CV AP
    kw = dict(costs=(0.01, 0.1, 1.0, 10.0), stages=(4,), cv=3)
    a = svm_eval(bb, trn, tst, **kw)
    perm = ImageData(tst.x, tst.y[torch.randperm(len(tst))], CLASSES, 'permuted')
    b = svm_eval(bb, trn, perm, **kw)
    c = svm_eval(bb, trn, toy((10, 10, 10), 7, 'other-test'), **kw)
    assert a[0]['chosen_costs'] == b[0]['chosen_costs'] == c[0]['chosen_costs']
    assert a[0]['cv_mAP'] == b[0]['cv_mAP'] == c[0]['cv_mAP']
    assert b[0]['value'] < a[0]['value']          # the permuted labels did reach the scoring
    lk = dict(ks=(2, 4), n_samples=2, stage=4, cost=(0.01, 1.0, 10.0))
    la, lb = lowshot_eval(bb, trn, tst, **lk), lowshot_eval(bb, trn, perm, **lk)
    assert [r['chosen_costs'] for r in la] == [r['chosen_costs'] for r in lb]

def test_choose_costs_uses_only_its_arguments():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(60, 8)), np.repeat([0, 1, 2], 20)
    c1, ap1 = choose_costs(X, y, (0.01, 1.0), cv=3, seed=0)
    c2, ap2 = choose_costs(X, y, (1.0, 0.01), cv=3, seed=0)       # order of the grid does not matter
    assert np.array_equal(c1, c2) and np.allclose(ap1, ap2) and ap1.shape == (3, 2)

# ---- low-shot ----
def test_lowshot_rows_and_seeds(data):
    trn, tst = data
    rows = lowshot_eval(ClassCoded(), trn, tst, ks=(1, 2, 4), n_samples=3, stage=2, cost=(0.1, 1.0))
    assert [(r['k'], r['metric']) for r in rows] == [(k, m) for k in (1, 2, 4) for m in ('top1', 'mAP')]
    seeds = set()
    for r in rows:
        assert len(r['values']) == 3 and len(r['seeds']) == 3 and len(set(r['seeds'])) == 3
        assert r['value'] == pytest.approx(np.mean(r['values']), abs=0.01) and r['std'] == pytest.approx(np.std(r['values']), abs=0.01)
        assert r['min'] <= r['value'] <= r['max'] and r['feature'] == 'feat3'
        if r['metric'] == 'top1': seeds |= set(r['seeds'])
    assert len(seeds) == 9                                       # independent draws for every (k, sample)
    assert rows[0]['cost_rule'].startswith('fallback') and 'CV' in rows[2]['cost_rule']
    # a recorded seed redraws its sample: k per class
    r4 = rows[4]
    assert r4['seeds'][0] == lowshot_seed(0, 4, 0)
    idx = lowshot_indices(trn.y.numpy(), 4, r4['seeds'][0])
    assert np.array_equal(np.bincount(trn.y.numpy()[idx]), [4, 4, 4])
    assert np.array_equal(idx, lowshot_indices(trn.y.numpy(), 4, r4['seeds'][0]))
    fixed = lowshot_eval(ClassCoded(), trn, tst, ks=(1,), n_samples=2, cost=0.5)
    assert fixed[0]['cost_rule'] == 'fixed 0.5' and fixed[0]['chosen_costs'][0] == [0.5] * 3

def test_k_too_large_names_the_class():
    trn = toy((20, 20, 3), 0, 'small-c')
    with pytest.raises(ValueError, match=r"k=4 .* 3 training examples of class 'c'"):
        lowshot_eval(ClassCoded(), trn, toy((5, 5, 5), 1), ks=(1, 4))
    with pytest.raises(ValueError, match="label 2"):
        lowshot_indices(trn.y.numpy(), 4, 0)

# ---- bad input ----
def test_one_class_raises(data):
    trn, tst = data
    one = ImageData(trn.x[trn.y == 1], trn.y[trn.y == 1], CLASSES, 'only-b')
    for f in (svm_eval, lowshot_eval):
        with pytest.raises(ValueError, match=r"at least 2 classes.*'b'"): f(ClassCoded(), one, tst)
    with pytest.raises(ValueError, match='at least 2 classes'):
        svm_on_features(np.ones((4, 2)), [0, 0, 0, 0], np.ones((2, 2)), [0, 0])

def test_missing_labels_raise(data):
    trn, tst = data
    with pytest.raises(ValueError, match='labels on the train split'): svm_eval(ClassCoded(), ImageData(trn.x), tst)
    with pytest.raises(ValueError, match='labels on the test split'): lowshot_eval(ClassCoded(), trn, ImageData(tst.x))

def test_test_class_unknown_to_train(data):
    trn, tst = data
    two = ImageData(trn.x[trn.y < 2], trn.y[trn.y < 2], CLASSES, 'a-b')
    with pytest.raises(ValueError, match="lacks.*'c'"): svm_eval(ClassCoded(), two, tst)

def test_too_many_folds_names_class():
    with pytest.raises(ValueError, match=r"3-fold.*class 'c' \(label 2\) has 2"):
        svm_eval(ClassCoded(), toy((10, 10, 2)), toy((3, 3, 3), 1), cv=3)

def test_bad_stage_and_k(data):
    trn, tst = data
    with pytest.raises(ValueError, match='stages'): svm_eval(ClassCoded(), trn, tst, stages=(5,))
    with pytest.raises(ValueError, match='k must be'): lowshot_eval(ClassCoded(), trn, tst, ks=(0, 1))

# ---- plots ----
def test_plots(data):
    import matplotlib; matplotlib.use('Agg')
    trn, tst = data
    fig = plot_svm_stages(svm_eval(ClassCoded(), trn, tst, costs=(1.0,), stages=(1, 3)))
    assert len(fig.axes[0].patches) == 4
    fig = plot_lowshot(lowshot_eval(ClassCoded(), trn, tst, ks=(1, 2), n_samples=2, cost=1.0))
    assert fig.axes[0].get_xscale() == 'log'
    with pytest.raises(ValueError, match='no low-shot rows'): plot_lowshot([])

def test_liblinear_multiclass_is_one_vs_rest():
    "One multi-class LinearSVC call must give the same weights as the per-class binary SVMs (C·2 on positives)."
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 120); X = l2_normalise(rng.normal(size=(120, 16)) + np.eye(16)[y] * 2)
    for C in (0.1, 10.0):
        Wm, bm = ovr_svms(X, y, np.arange(4), C, tol=1e-8, max_iter=100000)
        Wb, bb = ovr_svms(X, y, np.arange(4), C, binary=True, tol=1e-8, max_iter=100000)
        assert np.allclose(Wm, Wb, atol=1e-5) and np.allclose(bm, bb, atol=1e-5)

def test_step_ap_matches_sklearn():
    from sklearn.metrics import average_precision_score
    rng = np.random.default_rng(2)
    for n in (5, 50, 300):
        s, l = rng.integers(0, 6, n).astype(float), rng.integers(0, 2, n)      # many ties
        l[0] = 1
        assert voc_ap(s, l, 'sklearn') == pytest.approx(average_precision_score(l, s))
        s = rng.normal(size=n)
        assert voc_ap(s, l, 'sklearn') == pytest.approx(average_precision_score(l, s))
