"""`--size` and `--skip-bad-files`: the data-loading options of the API, offered by every command that loads data."""
import subprocess, sys
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from ssl_learn.cli import main
from ssl_learn.bench.run import bench_dir, run_dir, _data_flags

BIN = Path(sys.executable).parent/'ssl_learn'

def folder(root, stray=False):
    "A tiny labeled folder data set: 2 classes, mixed sizes, and (with `stray`) a text file among the images."
    rng = np.random.default_rng(0)
    for split, n in (('train', 40), ('test', 10)):
        for c in ('a', 'b'):
            d = root/split/c; d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                side = 12 if i % 5 else 16
                Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(d/f'{i}.png')
    if stray: (root/'train'/'a'/'notes.txt').write_text('not an image')
    return f'folder:{root}'

def test_the_commands_offer_both_flags():
    for cmd in ('train', 'eval', 'bench', 'demo'):
        h = subprocess.run([str(BIN), cmd, '--help'], capture_output=True, text=True).stdout
        assert '--size' in h and '--skip-bad-files' in h, cmd

def test_skip_bad_files_lets_eval_run(tmp_path, capsys):
    data = folder(tmp_path/'d', stray=True)
    with pytest.raises(SystemExit) as e: main(['eval', 'pixels', '--data', data, '--tier', 'test', '--out', str(tmp_path/'a.json')])
    assert e.value.code == 2 and 'notes.txt' in capsys.readouterr().err            # stops, naming the file
    with pytest.warns(UserWarning, match='notes.txt'):
        main(['eval', 'pixels', '--data', data, '--tier', 'test', '--out', str(tmp_path/'b.json'), '--skip-bad-files', '--size', '8',
              '--ks', '10,20'])
    assert (tmp_path/'b.json').exists()

def test_size_keys_the_benchmark_and_reaches_the_child():
    assert bench_dir('r', 'cpu', 'fmnist', 20) == Path('r/fmnist/cpu_20px') and bench_dir('r', 'cpu') == Path('r/fmnist/cpu')
    assert run_dir('runs', 'simclr', 'test', 'fmnist', 20) == Path('runs/fmnist/test_20px/simclr')
    assert _data_flags(20, 'skip') == ['--size', '20', '--skip-bad-files'] and _data_flags() == []
