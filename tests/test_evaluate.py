"evaluate(): baselines, protocol parsing, bad checkpoints, and the eval command for baselines."
import json, subprocess, sys
from pathlib import Path
import pytest, torch
from ssl_learn.eval.protocols import evaluate, parse_protocols, get_backbone, RawPixels
from ssl_learn.features import knn_classify
import torch.nn.functional as F
from ssl_learn.models import resnet18, save_backbone
from ssl_learn.data import load_fmnist

BIN = Path(sys.executable).parent/'ssl_learn'

def test_parse_protocols():
    assert parse_protocols('all') == ['knn', 'linear', 'mhead', 'svm', 'lowshot', 'semi', 'det', 'inst', 'seg']
    with pytest.raises(ValueError, match='available'): parse_protocols('knn,nope')
    with pytest.raises(ValueError): parse_protocols('')

def test_random_baseline_is_seeded():
    d = load_fmnist('test').subset(64)
    a, b = get_backbone('random', 'test', d, seed=3), get_backbone('random', 'test', d, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

def test_pixels_refuse_stage_protocols():
    with pytest.raises(ValueError, match='no stages'): evaluate('pixels', 'mhead', 'fmnist', 'test')

def test_wrong_channels_checkpoint(tmp_path):
    p = save_backbone(resnet18(in_chans=3, width=8), tmp_path/'rgb.pth')
    with pytest.raises(ValueError, match='3-channel'): evaluate(p, 'knn', 'fmnist', 'test')

def test_rows_carry_settings_and_provenance():
    rows = evaluate('random', 'knn', 'fmnist', 'test')
    assert len(rows) == 4 and all(r['settings']['T'] == 0.07 and r['tier'] == 'test' and r['protocol_seconds'] > 0 for r in rows)

def test_knn_classify_matches_a_brute_force_vote():
    "faiss's exact search inside `knn_classify` gives the vote a plain matmul + topk gives."
    g = torch.Generator().manual_seed(0)
    tr, te, y = torch.randn(2000, 32, generator=g), torch.randn(300, 32, generator=g), torch.randint(0, 5, (2000,), generator=g)
    pred = knn_classify(tr, y, te, ks=(10,), T=0.07)[10]
    s, i = (F.normalize(te, dim=1) @ F.normalize(tr, dim=1).T).topk(10, dim=1)
    votes = torch.zeros(300, 5).scatter_add_(1, y[i], (s / 0.07).exp())
    assert (pred == votes.argmax(1)).float().mean() > 0.99

def test_cli_eval_baselines(tmp_path):
    out = tmp_path/'px.json'
    r = subprocess.run([str(BIN), 'eval', 'pixels', '--protocol', 'knn', '--tier', 'test', '--out', str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    rows = json.loads(out.read_text())['rows']
    assert rows[0]['backbone'] == 'pixels' and rows[0]['value'] > 50
    r = subprocess.run([str(BIN), 'eval', 'pixels', '--protocol', 'lowshot', '--tier', 'test'], capture_output=True, text=True)
    assert r.returncode == 2 and 'no stages' in r.stderr


def test_each_protocol_reports_its_own_peak_memory(monkeypatch):
    "The peak is reset before each protocol: one that follows a heavier one must not report that one's peak."
    import ssl_learn.eval.protocols as P
    calls = []
    real = P.reset_peak_memory
    monkeypatch.setattr(P, 'reset_peak_memory', lambda device=None: calls.append(device) or real(device))
    rows = evaluate('random', 'knn,lowshot', 'fmnist', 'test')
    assert len(calls) == 2
    assert all(r['peak_memory_mb'] > 0 for r in rows)
    assert {r['peak_scope'] for r in rows} <= {'protocol', 'process'}


def test_reset_peak_memory_forgets_a_freed_allocation():
    from ssl_learn.core import peak_memory_mb, reset_peak_memory
    big = torch.ones(50_000_000); before = peak_memory_mb('cpu'); del big
    if not reset_peak_memory('cpu'): pytest.skip('no resettable peak on this OS')
    assert peak_memory_mb('cpu') < before - 100
