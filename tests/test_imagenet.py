"""ImageNet (reference §5.3) as an ImageFolder: the NAONet-A dry run at the paper's size, a tiny ImageFolder made from
the bundled CIFAR sample (upscaled) trained in smoke, one line per bad layout, a failing process of a two-process
job, batches that do not depend on the number of processes or on an interruption; and the CIFAR-100 transfer
preset."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nao_ws.data.folders import FolderBatches, load_folders
from nao_ws.data.images import SAMPLE_NPZ
from supernet.nets import NAONET_A, NASNetwork, multiply_adds
from supernet.spaces import parse_arch

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["train", "--task", "imagenet", "--preset", "smoke", "--device", "cpu", "--no-progress"]


def image_folder(root: Path, train: int = 4, val: int = 2, side: int = 72) -> Path:
    """An ImageFolder of the bundled CIFAR-10 sample: ``train`` / ``val`` images of each class, upscaled to
    ``side`` pixels, as PNG files in ``root/train/<class>/`` and ``root/val/<class>/``."""
    with np.load(SAMPLE_NPZ) as z:
        splits = {"train": (z["x_train"], z["y_train"], train), "val": (z["x_test"], z["y_test"], val)}
        for split, (x, y, n) in splits.items():
            for c in range(10):
                folder = root / split / f"n{c:08d}"
                folder.mkdir(parents=True)
                for i, image in enumerate(x[y == c][:n]):
                    Image.fromarray(image).resize((side, side), Image.BILINEAR).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture
def result(cli):
    def run(args) -> dict:
        code, out, err = cli(args)
        assert code == 0, err
        return json.loads(out.strip().splitlines()[-1])

    return run


def test_naonet_a_has_the_papers_imagenet_size(result):
    """Reference §5.3: N = 4, F = 42 at 224 x 224 has paper Table 3's 11.35M parameters (aux head excluded).
    Its multiply-adds are those of ref-PT's ImageNet network counted the same way, 1,244.0M (the paper's 584M
    is not the count of this network; README)."""
    info = result(["train", "--task", "imagenet", "--arch", NAONET_A, "--dry-run", "--json"])
    assert (info["space"], info["layers"], info["channels"], info["image_size"]) == ("cnn", 4, 42, 224)
    assert info["params"] == pytest.approx(11.35e6, rel=0.02)
    assert info["multiply_adds"] == pytest.approx(1244.0e6, rel=0.01)
    assert result(["train", "--task", "imagenet", "--dry-run", "--json"]) == info  # NAONet-A is the task's default


def test_multiply_adds_count_every_convolution_once():
    """A factorized reduce counts as its two 1x1 convolutions, not as the 2x2 kernel it runs; the classifier counts;
    the count of the convolutional part grows with the image's area."""
    from supernet.ops import FactorizedReduce

    reduce = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1, bias=False), FactorizedReduce(8, 8, True))
    assert multiply_adds(reduce, 16) == 16 * 16 * 8 * 3 + 8 * 8 * 8 * 8
    with torch.device("meta"):
        net = NASNetwork(parse_arch(NAONET_A, "cnn"), 1, 8, 10, stem="imagenet")
    blocks = net.classifier.fc.blocks.values()
    classifier = 10 * sum(b.shape[1] for b in blocks)
    assert multiply_adds(net, 128) - classifier == 4 * (multiply_adds(net, 64) - classifier)


def test_a_tiny_imagefolder_trains_in_smoke(folder, result, tmp_path):
    out = result(SMOKE + ["--data-dir", folder, "--output", tmp_path / "run"])
    assert out["epochs"] == 2 and out["task"] == "imagenet" and out["space"] == "cnn"
    assert 0 <= out["test_acc"] <= out["test_top5_acc"] <= 1
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records] == pytest.approx([0.4, 0.4 * 0.97])  # reference §5.3: x 0.97 per epoch
    assert result(["eval", "--checkpoint", tmp_path / "run", "--device", "cpu"])["test_top5_acc"] == out["test_top5_acc"]


def test_imagefolder_batches_do_not_depend_on_processes_or_interruptions(folder):
    """The global batches of one process are the two processes' shares side by side, crops included, and an
    iterator restored mid-epoch goes on with the batches of an uninterrupted one."""
    data = load_folders("imagenet", folder)

    def batches(rank=0, world=1):
        return FolderBatches(data.train, 20, data.mean, data.std, image_size=32, workers=0,
                             device=torch.device("cpu"), channels_last=False, generator_seed=5, rank=rank, world=world)

    single = batches()
    one = list(single) + list(single)  # two epochs
    two = [batches(r, 2) for r in range(2)]
    halves = [pair for _ in range(2) for pair in zip(*(list(b) for b in two))]
    for (x, y), ((x0, y0), (x1, y1)) in zip(one, halves, strict=True):
        assert torch.equal(x, torch.cat([x0, x1])) and torch.equal(y, torch.cat([y0, y1]))
    cut = batches()
    next(iter(cut))
    again = batches()
    again.load_state_dict(cut.state_dict())
    assert torch.equal(next(iter(again))[0], one[1][0])


def _missing_val(root):
    (root / "val").rename(root / "valid")


def _other_classes(root):
    (root / "val" / "n00000003").rename(root / "val" / "n00000099")


def _empty_class(root):
    for f in (root / "train" / "n00000004").iterdir():
        f.rename(f.with_suffix(".txt"))


def _unreadable(root):
    (root / "train" / "n00000002" / "1.png").write_bytes(b"not an image")


def _truncated_jpeg(root):
    """A JPEG cut in half, as an interrupted copy leaves it: its header reads, its pixels do not."""
    png = root / "train" / "n00000005" / "0.png"
    Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), quality=90)
    data = png.with_suffix(".jpg").read_bytes()
    png.with_suffix(".jpg").write_bytes(data[:len(data) // 2])
    png.unlink()


@pytest.mark.parametrize("damage, message", [
    (_missing_val, "val is missing: an ImageFolder needs train/ and val/"),
    (_other_classes, "the splits hold different classes (2 differ, e.g. "),
    (_empty_class, "n00000004 holds no image files"),
    (_unreadable, "n00000002/1.png: unreadable image (cannot identify image file"),
    (_truncated_jpeg, "n00000005/0.jpg: unreadable image ("),
])
def test_bad_imagefolder_layouts_are_one_line(damage, message, cli, tmp_path):
    """Found before the run folder exists (a layout), or while training its first epoch (an image): either way no
    run folder is left, so the corrected command can use the same --output."""
    root = image_folder(tmp_path / "data", train=2, val=1, side=32)
    damage(root)
    code, _, err = cli(SMOKE + ["--data-dir", root, "--batch-size", "20", "--data-workers", "0",
                                "--output", tmp_path / "run"])
    lines = [line for line in err.strip().splitlines() if not line.startswith("run folder: ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert not (tmp_path / "run").exists()


def test_no_imagenet_is_one_line(cli, tmp_path):
    code, _, err = cli(SMOKE + ["--data-dir", tmp_path, "--output", tmp_path / "run"])
    assert code == 2 and "ImageNet not found: expected train/ and val/ in" in err and "image-net.org" in err
    assert not (tmp_path / "run").exists()


def test_an_unreadable_image_in_one_process_ends_the_job_with_its_line(tmp_path):
    """Two processes (``--nproc 2``): the one that meets the broken image fails, torchrun stops the other, and the
    launcher prints that process's one line."""
    root = image_folder(tmp_path / "data")
    _unreadable(root)
    p = subprocess.run([sys.executable, "-m", "nao_ws", *SMOKE, "--data-dir", str(root), "--nproc", "2",
                        "--output", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert p.returncode == 2 and len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    assert errors[0].startswith("error: rank ") and "n00000002/1.png: unreadable image" in errors[0]


def test_cifar100_transfer_preset_is_naonet_a_at_f128(result):
    """Paper Table 2's 14.75%: NAONet-A at N = 6, F = 128 with drop-path keep 0.7 (reference §5.1); its size is the
    CIFAR-10 network's but for the 90 more outputs of the classifier."""
    c100 = result(["train", "--task", "cifar100", "--preset", "transfer", "--dry-run", "--json"])
    c10 = result(["train", "--task", "cifar10", "--space", "cnn", "--channels", "128", "--dry-run", "--json"])
    assert (c100["arch"], c100["layers"], c100["channels"]) == (c10["arch"], 6, 128)
    features = 3 * 4 * 128  # NAONet-A's normal cell has 3 loose ends at 4F channels in the last stage
    assert c100["params"] - c10["params"] == 90 * (features + 1)
