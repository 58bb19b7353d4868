import pytest, torch
from ssl_learn.methods.relative_loc import (PAIR_CELLS, POSITIONS, grid_patches, pair_labels, RelativeLoc, RelativeLocViews,
                                            drop_colors, relative_loc)
from ssl_learn.models import resnet18


@pytest.fixture(scope='module')
def fmnist_x():
    from ssl_learn.data import load_fmnist
    return load_fmnist('train').x[:256]


def test_pairs_and_positions():
    # MMSelfSup's order: (neighbour i, centre) for i in 0,1,2,3,5,6,7,8 → labels 0..7 = TL, T, TR, L, R, BL, B, BR
    assert PAIR_CELLS == (0, 1, 2, 3, 5, 6, 7, 8) and POSITIONS == ('TL', 'T', 'TR', 'L', 'R', 'BL', 'B', 'BR')
    rows_cols = [(c // 3 - 1, c % 3 - 1) for c in PAIR_CELLS]          # offset of the neighbour from the centre
    assert rows_cols == [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    assert pair_labels(3).tolist() == list(range(8)) * 3


def test_grid_patch_positions():
    x = torch.arange(63 * 63, dtype=torch.float).view(1, 1, 63, 63).expand(5, 1, 63, 63)
    p, off = grid_patches(x, 16)
    assert p.shape == (5, 9, 1, 16, 16) and off.min() >= 0 and off.max() <= 63 // 3 - 16
    for n in range(5):
        for c in range(9):
            t, l = c // 3 * 21 + int(off[n, c, 0]), c % 3 * 21 + int(off[n, c, 1])
            assert torch.equal(p[n, c, 0], x[n, 0, t:t + 16, l:l + 16])
    with pytest.raises(ValueError): grid_patches(x, 22)                  # does not fit in a 21-px cell
    with pytest.raises(ValueError): grid_patches(torch.zeros(1, 1, 30, 27), 5)


def test_model_pairs_neighbour_then_centre():
    torch.manual_seed(0)
    m = RelativeLoc(resnet18(in_chans=1, width=8)).eval()
    p = torch.rand(18, 1, 16, 16)
    f = m.backbone(p).view(2, 9, -1); pf = m.pair_features(p).view(2, 8, -1)
    for lab, c in enumerate(PAIR_CELLS):
        assert torch.allclose(pf[1, lab], torch.cat([f[1, c], f[1, 4]]), atol=1e-5)
    with pytest.raises(ValueError): m(p[:10])


def test_colour_tricks():
    x = (torch.rand(4, 3, 28, 28) * 255).to(torch.uint8)
    g = RelativeLocViews(gray_p=1.0)(x).view(4, 9, 3, 16, 16)
    assert torch.equal(g[:, :, 0], g[:, :, 1]) and torch.equal(g[:, :, 1], g[:, :, 2])
    d = drop_colors(torch.rand(10, 3, 8, 8), 1.0)
    assert ((d.flatten(2).std(2) < 0.02).sum(1) == 2).all()              # one channel kept, two replaced by faint noise
    one = torch.rand(10, 1, 8, 8); assert drop_colors(one, 1.0) is one   # grey input: nothing to drop


def test_loss_falls(fmnist_x):
    torch.manual_seed(0)
    m, cb = relative_loc(resnet18(in_chans=1, width=8), 28)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    x = fmnist_x[:32]; losses = []
    for _ in range(15):
        (p,), (y,) = cb.make_views(x, None)
        loss = m.loss(m(p), y); opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    assert abs(losses[0] - torch.log(torch.tensor(8.)).item()) < 0.1
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
