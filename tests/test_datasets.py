"""Datasets on real data: full PTB, the PTB excerpt, the CIFAR-10 npz files of the real-data folder, and CIFAR
fixtures in the official pickled layout built from the genuine sample images."""
import gzip
import hashlib
import itertools
import pickle
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from nao_ws.data import download, images, tasks
from nao_ws.data.batches import ImageBatches, fixed_batches
from nao_ws.data.images import ImageSet, load_images
from nao_ws.data.text import batchify, load_corpus
from nao_ws.errors import NaoWsError


def raises_one_line(match, fn, *args, **kwargs) -> str:
    """Call fn, expect a NaoWsError whose message is one line containing every string in match."""
    with pytest.raises(NaoWsError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for part in match:
        assert str(part) in message, message
    return message


@pytest.fixture(scope="module")
def mini():
    """The bundled sample: the real-data mini file (500 train, 200 test CIFAR-10 images)."""
    with np.load(images.SAMPLE_NPZ) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def ptb_tiny(data):
    return data("ptb-tiny")


@pytest.fixture(scope="module")
def train4000(data):
    return data("cifar10", "cifar10-train4000.npz")


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


# -- text --------------------------------------------------------------------------------------------------

def test_full_ptb_counts_and_speed(data):
    root = data("ptb").parent
    start = time.process_time()  # CPU time: other processes on a shared machine do not count
    corpus = load_corpus("ptb", root)
    assert time.process_time() - start < 2.0
    assert len(corpus.dictionary) == 10000
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929589, 73760, 82430)
    eos = corpus.dictionary.word2idx["<eos>"]
    assert int((corpus.train == eos).sum()) == 42068  # one per line
    assert corpus.train.dtype == torch.int64 and int(corpus.train.max()) == 9999
    words = [corpus.dictionary.idx2word[i] for i in corpus.train[:5].tolist()]
    assert words == "aer banknote berlitz calloway centrust".split()


def test_unseen_words_become_unk(ptb_tiny):
    corpus = load_corpus("ptb", ptb_tiny)
    train_words = set((ptb_tiny / "ptb.train.txt").read_text().split())
    assert set(corpus.dictionary.word2idx) == train_words | {"<eos>"}  # nothing from valid/test leaks in
    expected, unseen = [], 0
    for line in (ptb_tiny / "ptb.valid.txt").read_text().splitlines():
        for w in line.split():
            unseen += w not in train_words
            expected.append(w if w in train_words else "<unk>")
        expected.append("<eos>")
    assert unseen > 0
    assert [corpus.dictionary.idx2word[i] for i in corpus.valid.tolist()] == expected


def test_gzipped_files_in_task_folder_read_like_plain(tmp_path, ptb_tiny):
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        (tmp_path / "ptb").mkdir(exist_ok=True)
        with gzip.open(tmp_path / "ptb" / f"{name}.gz", "wb") as f:
            f.write((ptb_tiny / name).read_bytes())
    plain, zipped = load_corpus("ptb", ptb_tiny), load_corpus("ptb", tmp_path)
    assert plain.dictionary.idx2word == zipped.dictionary.idx2word
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(plain, split), getattr(zipped, split))


def write_wikitext(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wiki.train.tokens").write_text(" = Title = \n\n the cat sat <unk> \n")
    (folder / "wiki.valid.tokens").write_text(" the dog sat \n")
    (folder / "wiki.test.tokens").write_text("\n cat \n")


def test_wikitext_blank_lines_get_eos_and_unk_is_reused(tmp_path):
    write_wikitext(tmp_path / "wikitext-2")
    c = load_corpus("wikitext2", tmp_path)
    words = lambda ids: [c.dictionary.idx2word[i] for i in ids.tolist()]  # noqa: E731
    assert words(c.train) == "= Title = <eos> <eos> the cat sat <unk> <eos>".split()
    assert words(c.valid) == "the <unk> sat <eos>".split()
    assert words(c.test) == "<eos> cat <eos>".split()
    assert len(c.dictionary) == 7  # = Title <eos> the cat sat <unk>


def test_batchify_columns_are_contiguous_and_remainder_dropped():
    out = batchify(torch.arange(11), 3)
    assert out.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert out.is_contiguous()
    raises_one_line(["11 tokens", "12"], batchify, torch.arange(11), 12)


def test_truncated_gzip_names_the_file(tmp_path, data):
    shutil.copytree(data("ptb"), tmp_path / "ptb")
    bad = tmp_path / "ptb" / "ptb.valid.txt.gz"
    bad.chmod(0o644)
    bad.write_bytes(bad.read_bytes()[: 20000])
    raises_one_line([bad, "nao-ws data download --task ptb"], load_corpus, "ptb", tmp_path)


def test_missing_text_names_files_place_and_command(tmp_path):
    command = f"nao-ws data download --task wikitext2 --data-dir {tmp_path}"
    raises_one_line(["wiki.train.tokens", tmp_path / "wikitext-2", command], download.check, "wikitext2", tmp_path)


def test_ptb_download_checks_md5_and_loads(tmp_path, monkeypatch, data):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for split in ("train", "valid", "test"):
        with gzip.open(data("ptb") / f"ptb.{split}.txt.gz", "rb") as f:
            (mirror / f"ptb.{split}.txt").write_bytes(f.read())
    monkeypatch.setattr(download, "PTB_URL", mirror.as_uri() + "/{}")
    download.download("ptb", tmp_path / "root")
    corpus = load_corpus("ptb", tmp_path / "root")
    assert len(corpus.dictionary) == 10000 and len(corpus.test) == 82430
    names = sorted(p.name for p in (tmp_path / "root" / "ptb").iterdir())
    assert names == ["ptb.test.txt", "ptb.train.txt", "ptb.valid.txt"]


def test_ptb_download_with_wrong_content_leaves_nothing(tmp_path, monkeypatch, ptb_tiny):
    monkeypatch.setattr(download, "PTB_URL", ptb_tiny.as_uri() + "/{}")
    raises_one_line(["MD5", "ptb.train.txt"], download.download, "ptb", tmp_path)
    assert list((tmp_path / "ptb").iterdir()) == []


def test_wikitext_download_falls_back_to_mirror(tmp_path, monkeypatch):
    write_wikitext(tmp_path / "src" / "wikitext-2")
    archive = tmp_path / "wikitext-2-v1.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in (tmp_path / "src" / "wikitext-2").iterdir():
            z.write(p, f"wikitext-2/{p.name}")
    monkeypatch.setattr(download, "WIKITEXT2_URLS", ((tmp_path / "gone.zip").as_uri(), archive.as_uri()))
    root = tmp_path / "root"
    assert download.download("wikitext2", root) == root / "wikitext-2"
    assert load_corpus("wikitext2", root).valid.numel() == 4
    assert sorted(p.name for p in root.iterdir()) == ["wikitext-2"]  # archive removed


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    urls = ((tmp_path / "a.zip").as_uri(), (tmp_path / "b.zip").as_uri())
    monkeypatch.setattr(download, "WIKITEXT2_URLS", urls)
    raises_one_line(urls, download.download, "wikitext2", tmp_path)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", (tmp_path / "cifar.tar.gz").as_uri())
    raises_one_line(["CIFAR-10", tmp_path / "cifar.tar.gz", "by hand"], download.download, "cifar10", tmp_path)


# -- CIFAR in the official layout --------------------------------------------------------------------------

def write_batch(path: Path, x_nhwc, labels, label_key="labels") -> None:
    entry = {"batch_label": path.name, label_key: [int(v) for v in labels],
             "data": np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)).reshape(len(x_nhwc), -1),
             "filenames": [f"{i}.png" for i in range(len(labels))]}
    with open(path, "wb") as f:
        pickle.dump(entry, f)


@pytest.fixture
def cifar_root(tmp_path, mini):
    """cifar-10-batches-py with the 500 sample training images in 5 batches and the 200 test images."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for b in range(5):
        part = slice(100 * b, 100 * (b + 1))
        write_batch(folder / f"data_batch_{b + 1}", mini["x_train"][part], mini["y_train"][part])
    write_batch(folder / "test_batch", mini["x_test"], mini["y_test"])
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(mini["classes"]), "num_cases_per_batch": 100, "num_vis": 3072}, f)
    return tmp_path


def test_cifar_final_reads_what_torchvision_reads(cifar_root, mini, monkeypatch):
    data = load_images("cifar10", cifar_root, purpose="final")
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape == (500, 3, 32, 32)
    assert data.train.y.dtype == torch.int64
    assert torch.equal(data.train.x, nchw(mini["x_train"])) and torch.equal(data.valid.x, nchw(mini["x_test"]))
    assert torch.equal(data.valid.y, torch.from_numpy(mini["y_test"].astype(np.int64)))
    assert (data.num_classes, data.mean, data.std) == (10, images.CIFAR10_MEAN, images.CIFAR10_STD)
    # torchvision reads the same layout once its MD5 checks (official files only) are switched off
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a: True)
    reference = torchvision.datasets.CIFAR10(str(cifar_root), train=True)
    assert torch.equal(data.train.x, nchw(reference.data))
    assert data.train.y.tolist() == reference.targets
    # the data dir may also be the batches folder itself
    inside = load_images("cifar10", cifar_root / "cifar-10-batches-py", purpose="final")
    assert torch.equal(inside.valid.x, data.valid.x)


def test_cifar_search_split_is_fixed_disjoint_and_stratified(cifar_root):
    torch.manual_seed(1)
    np.random.seed(1)
    a = load_images("cifar10", cifar_root, dev_size=50)
    torch.manual_seed(2)
    np.random.seed(2)
    b = load_images("cifar10", cifar_root, dev_size=50)
    assert torch.equal(a.valid.x, b.valid.x) and torch.equal(a.train.x, b.train.x)
    assert (len(a.train), len(a.valid)) == (450, 50)
    assert a.valid.y.bincount(minlength=10).tolist() == [5] * 10
    full = load_images("cifar10", cifar_root, purpose="final").train
    key = lambda s: {bytes(img.numpy()) for img in s.x}  # noqa: E731
    assert not key(a.train) & key(a.valid)
    assert key(a.train) | key(a.valid) == key(full)
    raises_one_line(["5000", "499"], load_images, "cifar10", cifar_root)  # 45k/5k needs the full 50k


def test_cifar100_uses_fine_labels(tmp_path, mini):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    write_batch(folder / "train", mini["x_train"], mini["y_train"] + 90, "fine_labels")
    write_batch(folder / "test", mini["x_test"], mini["y_test"] + 90, "fine_labels")
    data = load_images("cifar100", tmp_path, purpose="final")
    assert data.num_classes == 100 and int(data.train.y.max()) == 99 and data.mean == images.CIFAR100_MEAN


def test_cifar_corruption_names_the_file(cifar_root, mini):
    folder = cifar_root / "cifar-10-batches-py"
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])
    raises_one_line([batch, "unreadable", "nao-ws data download --task cifar10"], load_images, "cifar10", cifar_root)
    labels = mini["y_train"][:100].copy()
    labels[7] = 10
    write_batch(batch, mini["x_train"][:100], labels)
    raises_one_line([batch, "label 10 out of range 0..9"], load_images, "cifar10", cifar_root)
    (folder / "test_batch").unlink()
    raises_one_line(["test_batch", folder, f"nao-ws data download --task cifar10 --data-dir {cifar_root}"],
                    load_images, "cifar10", cifar_root)


# -- npz: the bundled sample and files given by path -------------------------------------------------------

def test_bundled_sample_is_the_genuine_mini_file(data):
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(images.SAMPLE_NPZ) == digest(data("cifar10", "cifar10-mini-train500-test200.npz", shipped=False))


def test_sample_splits(mini):
    final = load_images("cifar10-sample", purpose="final")
    assert (len(final.train), len(final.valid)) == (500, 200)
    assert torch.equal(final.valid.x, nchw(mini["x_test"]))
    search = load_images("cifar10-sample")
    assert (len(search.train), len(search.valid)) == (450, 50)
    assert search.valid.y.bincount(minlength=10).tolist() == [5] * 10
    assert torch.equal(search.valid.x, load_images("cifar10-sample").valid.x)
    assert "500 train / 200 test images" in download.check("cifar10-sample")


def test_npz_path_holds_out_its_last_images(train4000):
    with np.load(train4000) as z:
        x, y = z["x"], z["y"]
    data = load_images("cifar10", npz_path=train4000)
    assert (len(data.train), len(data.valid)) == (3500, 500)
    assert torch.equal(data.valid.x, nchw(x[3500:])) and torch.equal(data.train.x, nchw(x[:3500]))
    assert data.valid.y.tolist() == y[3500:].tolist()
    assert len(load_images("cifar10", npz_path=train4000, dev_size=1000).valid) == 1000
    raises_one_line([train4000, "no test split"], load_images, "cifar10", npz_path=train4000, purpose="final")


@pytest.mark.parametrize("change, problem", [
    (lambda a: a.update(x=a["x"].astype(np.float32)), "uint8"),
    (lambda a: a.update(x=a["x"][..., 0]), "shape"),
    (lambda a: a.update(y=a["y"][:-1]), "labels have shape"),
    (lambda a: a["y"].__setitem__(3, 12), "label 12 out of range"),
    (lambda a: a.pop("y"), "expected x, y"),
])
def test_malformed_npz_names_file_and_problem(tmp_path, change, problem):
    arrays = {"x": np.zeros((4, 32, 32, 3), np.uint8), "y": np.arange(4, dtype=np.uint8)}
    change(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    raises_one_line([path, problem], load_images, "cifar10", npz_path=path, dev_size=1)


def test_an_npz_that_says_its_arrays_twice_is_refused(tmp_path):
    """Two members of one name (np.load reads the last) or both forms of the file (one would be ignored)."""
    import io
    import warnings
    import zipfile

    x, y = np.zeros((4, 32, 32, 3), np.uint8), np.arange(4, dtype=np.uint8)
    path = tmp_path / "twice.npz"
    with zipfile.ZipFile(path, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it writes
        for name, array in (("x", x), ("y", y), ("y", y[::-1].copy())):
            buf = io.BytesIO()
            np.save(buf, array)
            z.writestr(f"{name}.npy", buf.getvalue())
    raises_one_line([path, "holds the array y twice"], load_images, "cifar10", npz_path=path, dev_size=1)
    both = tmp_path / "both.npz"
    np.savez(both, x=x, y=y, x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])
    raises_one_line([both, "has both x, y and x_train"], load_images, "cifar10", npz_path=both, dev_size=1)


def test_truncated_or_missing_npz(tmp_path):
    path = tmp_path / "cut.npz"
    path.write_bytes(images.SAMPLE_NPZ.read_bytes()[:100000])
    raises_one_line([path, "not a readable .npz"], load_images, "cifar10", npz_path=path)
    raises_one_line([tmp_path / "none.npz", "not found"], load_images, "cifar10", npz_path=tmp_path / "none.npz")


def test_bad_arguments_are_user_errors():
    raises_one_line(["mnist", "cifar10"], load_images, "mnist")
    raises_one_line(["'train'", "search"], load_images, "cifar10-sample", purpose="train")
    raises_one_line(["ptb"], load_corpus, "cifar10")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NAO_WS_DATA", str(tmp_path))
    assert tasks.default_data_dir() == tmp_path
    monkeypatch.delenv("NAO_WS_DATA")
    repo_data = Path(tasks.__file__).resolve().parents[2] / "data"
    assert tasks.default_data_dir() == repo_data and (repo_data / "README.md").is_file()


# -- batches -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample():
    return load_images("cifar10-sample")


def numbered(data: ImageSet) -> ImageSet:
    """The same images labelled by their index, so every output image can be traced to its source."""
    return ImageSet(data.x, torch.arange(len(data)))


def collect(batches, n=None):
    """The next n batches (all the rest of the epoch when None), leaving the iterator suspended after the last."""
    return list(itertools.islice(batches, n))


def test_batches_shapes_and_lengths(sample):
    b = ImageBatches(sample.train, 64, sample.mean, sample.std, train=True, generator_seed=0)
    assert len(b) == 7 and len(collect(b)) == 7
    x, y = next(iter(b))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.device.type == y.device.type == "cpu"
    tail = ImageBatches(sample.train, 64, sample.mean, sample.std, train=False, generator_seed=0, drop_last=False)
    assert len(tail) == 8 and [len(y) for _, y in tail][-1] == 450 - 7 * 64
    raises_one_line(["batch size 451"], ImageBatches, sample.train, 451, sample.mean, sample.std,
                    train=True, generator_seed=0)


def test_normalisation(sample):
    pixels = sample.train.x.float() / 255
    mean = pixels.mean(dim=(0, 2, 3)).tolist()
    std = pixels.std(dim=(0, 2, 3)).tolist()
    x = torch.cat([x for x, _ in ImageBatches(sample.train, 50, mean, std, train=False, generator_seed=0)])
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4 and (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    x = torch.cat([x for x, _ in fixed_batches(sample.train, 50, images.CIFAR10_MEAN, images.CIFAR10_STD, "cpu")])
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.1  # the published CIFAR-10 statistics fit the sample


def test_augmented_images_are_flipped_crops_of_the_padded_source(sample):
    data = numbered(sample.train)
    b = ImageBatches(data, 90, (0, 0, 0), (1, 1, 1), train=True, generator_seed=3)
    padded = torch.nn.functional.pad(data.x, (4, 4, 4, 4))
    offsets, flips, seen = set(), set(), []
    for x, idx in b:
        seen += idx.tolist()
        for img, i in zip(x[:30], idx[:30].tolist()):
            img = (img * 255).round().to(torch.uint8)
            match = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                     if torch.equal(img, (lambda c: c.flip(-1) if f else c)(padded[i, :, dy:dy + 32, dx:dx + 32]))]
            assert match, "output is not a (flipped) crop of its source image"
            offsets.add(match[0][:2])
            flips.add(match[0][2])
    assert sorted(seen) == list(range(450))  # each image once per epoch
    assert len(offsets) > 20 and flips == {False, True}
    assert seen != list(range(450))  # shuffled


def test_cutout_zeroes_one_clipped_square(sample):
    b = ImageBatches(sample.train, 150, sample.mean, sample.std, train=True, cutout=16, generator_seed=0)
    x, _ = next(iter(b))
    sizes = set()
    for img in x:
        zero = (img == 0).all(dim=0)
        rows, cols = zero.any(dim=1).nonzero().flatten(), zero.any(dim=0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert 8 <= h <= 16 and 8 <= w <= 16 and int(zero.sum()) == h * w  # one rectangle
        assert rows[-1] - rows[0] == h - 1 and cols[-1] - cols[0] == w - 1
        sizes.add((h, w))
    assert (16, 16) in sizes and len(sizes) > 1  # full squares and squares clipped at the border


def test_batches_are_determined_by_the_seed(sample):
    def two_epochs(seed):
        b = ImageBatches(sample.train, 100, sample.mean, sample.std, train=True, cutout=16, generator_seed=seed)
        return collect(b) + collect(b)
    a, again, other = two_epochs(5), two_epochs(5), two_epochs(6)
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, again))
    assert not torch.equal(a[0][0], other[0][0])
    assert not torch.equal(a[0][1], a[4][1])  # the second epoch reshuffles


@pytest.mark.parametrize("stop_after", [2, 4])  # mid-epoch, and right after the epoch's last batch
def test_resume_mid_epoch_is_exact(sample, tmp_path, stop_after):
    def make():
        return ImageBatches(sample.train, 100, sample.mean, sample.std, train=True, cutout=16, generator_seed=9)
    first = make()
    collect(first, stop_after)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    rest = collect(first)
    assert len(rest) == (len(first) - stop_after or len(first))  # a finished epoch is followed by a full one
    expected = rest + collect(first)
    resumed = make()
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    got = collect(resumed) + collect(resumed)
    assert len(got) == len(expected) > 0
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(got, expected))
    other = ImageBatches(sample.train, 50, sample.mean, sample.std, train=True, generator_seed=9)
    raises_one_line(["batches of 100", "batches of 50"], other.load_state_dict, first.state_dict())


def test_fixed_batches_are_plain_and_in_order(sample):
    batches = fixed_batches(sample.valid, 20, sample.mean, sample.std, "cpu", limit=45)
    assert [len(y) for _, y in batches] == [20, 20, 5]
    assert torch.equal(torch.cat([y for _, y in batches]), sample.valid.y[:45])
    plain = ImageBatches(sample.valid, 20, sample.mean, sample.std, train=False, generator_seed=0, drop_last=False)
    assert torch.equal(batches[0][0], next(iter(plain))[0])
