"""PTB and WikiText-2 (reference §3.2, §5.2) as 1-D tensors of token ids, which `batchify` cuts into BPTT
columns; the vocabulary comes from the training split only."""
from __future__ import annotations

import gzip
import itertools
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import NaoWsError
from .tasks import TEXT_TASKS, check_task, data_root, get_it, one_line

EOS, UNK = "<eos>", "<unk>"


@dataclass(frozen=True)
class TextSource:
    title: str
    folder: str  # sub-folder of the data dir that `download` fills
    files: dict  # split -> file name


TEXT_SOURCES = {
    "ptb": TextSource("PTB", "ptb", {s: f"ptb.{s}.txt" for s in ("train", "valid", "test")}),
    "wikitext2": TextSource("WikiText-2", "wikitext-2", {s: f"wiki.{s}.tokens" for s in ("train", "valid", "test")}),
}
# Mikolov's simple-examples PTB files as mirrored by the Zaremba et al. LSTM code, with the MD5s torchtext
# checks for the same files.


class Dictionary:
    """Word <-> id maps; ids follow first appearance in the training split."""

    def __init__(self, word2idx: dict):
        self.word2idx = word2idx
        self.idx2word = list(word2idx)

    def __len__(self) -> int:
        return len(self.idx2word)


@dataclass
class Corpus:
    dictionary: Dictionary
    train: torch.Tensor  # int64 [T] token ids
    valid: torch.Tensor
    test: torch.Tensor
    name: str


def text_files(task: str, root: Path) -> dict:
    """split -> existing path, looked up in root and root/<folder>, plain or gzipped."""
    src = TEXT_SOURCES[task]
    found = {}
    for split, name in src.files.items():
        candidates = [d / n for d in (root, root / src.folder) for n in (name, name + ".gz")]
        found[split] = next((p for p in candidates if p.is_file()), None)
    if None in found.values():
        raise NaoWsError(
            f"{src.title} not found: expected {', '.join(src.files.values())} (plain or .gz) in {root / src.folder} "
            f"or {root}; {get_it(task, root)}"
        )
    return found


def _read_words(path: Path, task: str, root: Path) -> list:
    """Whitespace-separated words with <eos> after every line (the AWD-LSTM / ENAS convention)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")  # text mode has already turned \r\n and \r into \n
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise NaoWsError(f"{path}: unreadable ({one_line(exc)}); delete it and {get_it(task, root)}") from None
    if lines[-1] == "":  # the text after the final newline is not a line
        lines.pop()
    # one join and split instead of a split per line: same words, several times faster
    return f" {EOS} ".join(lines).split() + [EOS] if lines else []


def _ids(ids) -> torch.Tensor:
    return torch.from_numpy(np.array(list(ids), dtype=np.int64))  # 3x faster than torch.tensor(list)


def _encode(words: list, word2idx: dict) -> torch.Tensor:
    """Ids of words from a held-out split; words never seen in training become <unk> (added if needed)."""
    ids = _ids(map(word2idx.get, words, itertools.repeat(-1)))  # map over C methods: 5x faster than a loop
    unseen = ids < 0
    if unseen.any():
        ids[unseen] = word2idx.setdefault(UNK, len(word2idx))
    return ids


def read_corpus(task: str, paths: dict, root: Path) -> Corpus:
    words = {split: _read_words(path, task, root) for split, path in paths.items()}
    if len(words["train"]) == 0:
        raise NaoWsError(f"{paths['train']}: contains no text; delete it and {get_it(task, root)}")
    word2idx = {w: i for i, w in enumerate(dict.fromkeys(words["train"]))}  # in order of first appearance
    train = _ids(map(word2idx.__getitem__, words["train"]))
    valid, test = _encode(words["valid"], word2idx), _encode(words["test"], word2idx)
    return Corpus(Dictionary(word2idx), train, valid, test, task)


def load_corpus(task: str, data_dir=None) -> Corpus:
    """PTB or WikiText-2 as token ids; the vocabulary comes from the training split only (reference §3.2, §5.2)."""
    check_task(task, TEXT_TASKS)
    root = data_root(data_dir)
    return read_corpus(task, text_files(task, root), root)


def batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
    """[T] -> [T // bsz, bsz]: column j is the j-th contiguous stretch; the remainder is dropped (AWD-LSTM/ENAS)."""
    if not 0 < bsz <= data.numel():
        raise NaoWsError(
            f"cannot cut {data.numel()} tokens into {bsz} columns; use a batch size from 1 to {data.numel()}"
        )
    rows = data.numel() // bsz
    return data[: rows * bsz].view(bsz, rows).t().contiguous()


def check_sizes(corpus: Corpus, batch_size: int, bptt: int) -> None:
    """What a supernet search's options ask of the corpus, as one-line errors before anything is built: the
    training stream needs at least two rows of ``batch_size`` columns, each scoring window ``2 * bptt + 1``
    validation tokens (a burn-in and a scored stretch)."""
    train, valid = corpus.train.numel(), corpus.valid.numel()
    if train // batch_size < 2:
        raise NaoWsError(f"--batch-size {batch_size} leaves {train // batch_size} row(s) of the {train} training "
                         f"tokens; it must be at most {train // 2}")
    if valid < 2 * bptt + 1:
        raise NaoWsError(f"--bptt {bptt}: a scoring window reads {2 * bptt + 1} validation tokens, and the "
                         f"validation split has {valid}; use --bptt {max(1, (valid - 1) // 2)} or less, or a larger "
                         "corpus")
