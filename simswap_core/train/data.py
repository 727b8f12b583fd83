"""Training data: identity folders of pre-aligned face crops (the VGGFace2 layout) and a resumable batch loader.

    ds = FaceCropDataset("vggface2_224")            # root/<identity>/*.jpg|jpeg|png|webp, crops of one size
    loader = make_loader(ds, 8, seed=0)             # endless, deterministic, resumable, rank-sharded
    batch = next(loader)                            # target [8,3,S,S], source [8,3,S,S] in [0,1], identity [8]
    state = loader.state_dict()                     # ... later: loader.load_state_dict(state)

Pairing as the released SimSwap trainer (training spec section 1): the identity folders are shuffled once with
``random.Random(1234)``; dataset item i is folder i and holds two photos of that person drawn independently and
uniformly WITH replacement (both can be the same file): ``target`` (the attribute image) and ``source`` (the
identity image). The transform is ToTensor only: RGB float32 = uint8 / 255, no resize, flip or colour change
(``hflip=True`` adds a random horizontal flip, off by default as in the official code). Which partner a row gets on
odd steps is the trainer's business (``shuffled_partner``).

Determinism: every draw comes from a ``random.Random`` seeded by (loader seed, epoch, position of the row in the
global batch), so a batch does not depend on the number of DataLoader workers, a resumed run sees exactly the batches
of the uninterrupted run, and rank r of a world of W processes with batch B gets rows r*B..(r+1)*B-1 of the batch
one process with batch W*B would get.

Bad files never stop a run: the construction scan reads only each file's header (empty, unreadable, non-image and
non-square files are skipped and counted with their reasons); a file that fails to decode later (truncated data) is
replaced by another photo of the same person drawn from the same random stream, and counted.
"""
from __future__ import annotations

import os
import random
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from ..checks import check_integer
from ..errors import InputError

__all__ = ["CROP_EXTS", "FaceCropDataset", "FaceBatchLoader", "make_loader", "shuffled_partner"]

CROP_EXTS = (".jpg", ".jpeg", ".png", ".webp")
FOLDER_SHUFFLE_SEED = 1234       # the official data loader's random.seed(1234) before shuffling the folders
MAX_CROP_SIZE = 2048
_EXAMPLES = 3                    # file names shown per skip reason in the report


def shuffled_partner(batch_size: int, rng: random.Random) -> list[int]:
    """The official per-interval permutation: ``random.shuffle`` of ``range(batch_size)`` with ``rng``.

    Row i of a batch takes its identity image from row ``perm[i]`` on odd steps (a fixed point stays a
    same-identity pair).
    """
    batch_size = check_integer(batch_size, "shuffled_partner: batch_size", low=1)
    perm = list(range(batch_size))
    rng.shuffle(perm)
    return perm


@dataclass
class _Scan:
    """What the construction scan found."""

    identities: list[str] = field(default_factory=list)     # folder names, in dataset order
    files: list[list[Path]] = field(default_factory=list)   # usable crops per identity
    sizes: list[list[tuple[int, int]]] = field(default_factory=list)   # (W, H) per file
    skipped: dict[Path, str] = field(default_factory=dict)  # file -> reason
    ignored: int = 0                                         # files without an image extension
    few_images: list[str] = field(default_factory=list)     # identities below min_images_per_identity
    empty_folders: list[str] = field(default_factory=list)  # identities with no usable file


def _header(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """((W, H), None) from the image header (no decode), or (None, reason)."""
    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        with Image.open(path) as im:
            if im.format not in ("JPEG", "PNG", "WEBP", "MPO"):
                return None, f"not a JPEG/PNG/WebP image (format {im.format})"
            return (int(im.size[0]), int(im.size[1])), None
    except UnidentifiedImageError:
        return None, "not an image (Pillow cannot identify its format)"
    except OSError as e:
        return None, f"unreadable ({type(e).__name__}: {e.strerror or e})"
    except Exception as e:   # Pillow raises many types for hostile headers (SyntaxError, ValueError, ...)
        return None, f"not an image ({type(e).__name__}: {e})"


def _list_dir(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


class FaceCropDataset(Dataset):
    """Identity folders of pre-aligned square face crops; item i = (target, source) of identity folder i.

    root: ``root/<identity>/*.(jpg|jpeg|png|webp)`` (hidden files and folders, other extensions and nested
    folders are ignored). crop_size: None = the crops' stored size, which must be the same for every file (else
    InputError naming a file of each size); an int S = crops of another size are resized to S x S on loading
    (Pillow bicubic, with antialiasing when shrinking) and counted. seed: the one-time folder shuffle
    (official 1234). min_images_per_identity: identities with fewer usable crops are left out and counted (1 =
    keep every identity; with one photo, target and source are that photo). hflip: random horizontal flips
    (off by default, as the official loader). log: where the one-line report and warnings go (None = silent).

    Attributes: ``identities`` (folder names in item order), ``files`` (crops per item), ``crop_size`` (S),
    ``skipped`` (number of skipped files), ``skipped_files`` ({path: reason}), ``report`` (one-line summary).
    ``dataset[i]`` draws with the dataset's own seeded generator; the loader calls ``draw(i, seed)``.
    """

    def __init__(self, root: str | os.PathLike, crop_size: int | None = None, *, seed: int = FOLDER_SHUFFLE_SEED,
                 min_images_per_identity: int = 1, hflip: bool = False,
                 log: Callable[[str], object] | None = print) -> None:
        self.root = Path(root)
        if crop_size is not None:
            crop_size = check_integer(crop_size, "FaceCropDataset: crop_size", low=8, high=MAX_CROP_SIZE)
        self.min_images = check_integer(min_images_per_identity, "FaceCropDataset: min_images_per_identity", low=1)
        self.seed = check_integer(seed, "FaceCropDataset: seed")
        self.hflip = bool(hflip)
        self.log = log
        scan = self._scan()
        self.identities = scan.identities
        self.files = scan.files
        self.skipped_files: dict[Path, str] = dict(scan.skipped)
        self._scan_info = scan
        self.crop_size, self.resized = self._check_sizes(scan, crop_size)
        self._resize = crop_size is not None
        self._rng = random.Random(f"items:{self.seed}")
        self._bad: dict[Path, str] = {}       # files that failed to decode in this process (cache only)
        self.load_failures: dict[Path, str] = {}   # files that failed to decode (reported by the loader)
        if self.log is not None:
            self.log(self.report)

    # ------------------------------------------------------------------------------------------- scan

    def _scan(self) -> _Scan:
        root = self.root
        if not root.exists():
            raise InputError(f"training data {root}: folder not found")
        if not root.is_dir():
            raise InputError(f"training data {root}: expected a folder of identity folders (root/<identity>/*.jpg)")
        entries = _list_dir(root)
        folders = [Path(e.path) for e in entries if e.is_dir()]
        loose = [e.name for e in entries if e.is_file() and Path(e.name).suffix.lower() in CROP_EXTS]
        if not folders:
            hint = (f"; it holds {len(loose)} image(s) directly (e.g. {loose[0]}): move them into "
                    f"{root}/<identity>/ (one folder per person)" if loose else "")
            raise InputError(f"training data {root}: no identity folders found; expected root/<identity>/*.jpg "
                             f"(the VGGFace2 layout){hint}")
        folders.sort(key=lambda p: p.name)
        random.Random(self.seed).shuffle(folders)       # official: random.seed(1234); random.shuffle(folders)
        scan = _Scan()
        for folder in folders:
            good: list[Path] = []
            sizes: list[tuple[int, int]] = []
            for e in _list_dir(folder):
                if not e.is_file():
                    continue
                p = Path(e.path)
                if p.suffix.lower() not in CROP_EXTS:
                    scan.ignored += 1
                    continue
                size, reason = _header(p)
                if size is not None and size[0] != size[1]:
                    reason = f"not square ({size[0]}x{size[1]}): not an aligned face crop"
                    size = None
                if size is None:
                    scan.skipped[p] = str(reason)
                    continue
                good.append(p)
                sizes.append(size)
            if not good:
                scan.empty_folders.append(folder.name)
            elif len(good) < self.min_images:
                scan.few_images.append(folder.name)
            else:
                scan.identities.append(folder.name)
                scan.files.append(good)
                scan.sizes.append(sizes)
        if not scan.identities:
            raise InputError(f"training data {root}: no usable identity folder ({self._why_empty(scan, folders)})")
        return scan

    def _why_empty(self, scan: _Scan, folders: list[Path]) -> str:
        parts = [f"{len(folders)} folder(s)"]
        if scan.empty_folders:
            parts.append(f"{len(scan.empty_folders)} without a readable .jpg/.jpeg/.png/.webp crop")
        if scan.few_images:
            parts.append(f"{len(scan.few_images)} with fewer than {self.min_images} images "
                         "(min_images_per_identity)")
        if scan.skipped:
            parts.append(self._skip_summary(scan.skipped))
        return "; ".join(parts)

    @staticmethod
    def _skip_summary(skipped: dict[Path, str]) -> str:
        def kind(reason: str) -> str:
            return reason.split(" (")[0]

        counts = Counter(kind(r) for r in skipped.values())
        out = []
        for k, n in counts.most_common():
            ex = [p.as_posix() for p, r in skipped.items() if kind(r) == k][:_EXAMPLES]
            out.append(f"{n} {k} (e.g. {', '.join(ex)})")
        return f"skipped {len(skipped)} file(s): " + ", ".join(out)

    def _check_sizes(self, scan: _Scan, crop_size: int | None) -> tuple[int, int]:
        by_size: dict[int, list[Path]] = {}
        for files, sizes in zip(scan.files, scan.sizes):
            for p, (w, _) in zip(files, sizes):
                by_size.setdefault(w, []).append(p)
        if crop_size is None:
            if len(by_size) > 1:
                found = ", ".join(f"{s}x{s} ({len(ps)} file(s), e.g. {ps[0]})"
                                  for s, ps in sorted(by_size.items(), key=lambda kv: -len(kv[1])))
                raise InputError(f"training data {self.root}: the crops have different sizes: {found}; all crops "
                                 "must have one size: pass crop_size (--crop-size) to resize them on loading, or "
                                 "prepare them again with one --crop-size")
            return next(iter(by_size)), 0
        return crop_size, sum(len(ps) for s, ps in by_size.items() if s != crop_size)

    # ------------------------------------------------------------------------------------------- report

    @property
    def skipped(self) -> int:
        """Files left out: at the scan, plus those that failed to decode while loading (each counted once)."""
        return len(self.skipped_files) + len([p for p in self.load_failures if p not in self.skipped_files])

    @property
    def num_images(self) -> int:
        return sum(len(f) for f in self.files)

    @property
    def report(self) -> str:
        """One line: identities, images, crop size, and what was skipped, with reasons."""
        s = self._scan_info
        n = len(self.identities)
        parts = [f"training data {self.root}: {n} identit{'y' if n == 1 else 'ies'}, {self.num_images} images, "
                 f"crops {self.crop_size}x{self.crop_size}"]
        if self.resized:
            parts.append(f"{self.resized} crop(s) of another size resized to {self.crop_size}")
        single = sum(1 for f in self.files if len(f) == 1)
        if single:
            parts.append(f"{single} identit{'y has' if single == 1 else 'ies have'} a single image (its target "
                         "and source are always that photo)")
        if s.few_images:
            parts.append(f"{len(s.few_images)} identit{'y' if len(s.few_images) == 1 else 'ies'} with fewer than "
                         f"{self.min_images} images left out")
        if s.empty_folders:
            parts.append(f"{len(s.empty_folders)} folder(s) without a usable crop left out")
        if self.skipped_files:
            parts.append(self._skip_summary(self.skipped_files))
        if self.load_failures:
            parts.append(f"{len(self.load_failures)} file(s) failed to decode while loading and were replaced "
                         f"by another photo of the same identity (e.g. {next(iter(self.load_failures))})")
        if s.ignored:
            parts.append(f"{s.ignored} file(s) without a .jpg/.jpeg/.png/.webp extension ignored")
        return "; ".join(parts)

    # ------------------------------------------------------------------------------------------- items

    def __len__(self) -> int:
        return len(self.identities)

    def _decode(self, path: Path) -> torch.Tensor:
        """[3,S,S] float32 RGB [0,1] (ToTensor of the RGB image; resized to crop_size when asked)."""
        with Image.open(path) as f:
            im = f.convert("RGB")
        if im.size != (self.crop_size, self.crop_size):
            if not self._resize:
                raise OSError(f"decoded size {im.size[0]}x{im.size[1]} differs from the header's")
            im = im.resize((self.crop_size, self.crop_size), Image.Resampling.BICUBIC)
        a = np.array(im, dtype=np.uint8)
        return torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0)

    def _load(self, item: int, first: int, retry_seed: str, flip: bool, failures: list[tuple[str, str]]
              ) -> torch.Tensor:
        """The crop ``first`` of identity ``item``; if it fails to decode, the other photos of that identity in an
        order drawn from ``random.Random(retry_seed)`` (deterministic: it does not depend on earlier failures)."""
        files = self.files[item]
        order: list[int] = [first]
        t = 0
        while t < len(order):
            p = files[order[t]]
            known = self._bad.get(p)
            if known is None:
                try:
                    img = self._decode(p)
                except Exception as e:     # truncated / damaged data: Pillow raises OSError, SyntaxError, ...
                    known = self._bad[p] = f"failed to decode ({type(e).__name__}: {e})"
                else:
                    return img.flip(-1) if flip else img
            failures.append((str(p), known))
            if t == 0:
                rest = [j for j in range(len(files)) if j != first]
                random.Random(retry_seed).shuffle(rest)
                order += rest
            t += 1
        raise _IdentityUnreadable(item)

    def draw(self, item: int, seed: int | str) -> dict[str, Any]:
        """Item ``item`` with the draws of ``random.Random(seed)``: target [3,S,S], source [3,S,S] float32 in
        [0,1] (two photos of the identity, independent, with replacement), identity (int), failures (list of
        (path, reason) of files that failed to decode and were replaced). If no photo of the identity decodes,
        the next identity (item + 1, ...) is used and its number returned."""
        failures: list[tuple[str, str]] = []
        n = len(self.identities)
        for k in range(n):
            i = (item + k) % n
            rng = random.Random(f"{seed}:{k}")
            a, b = rng.randrange(len(self.files[i])), rng.randrange(len(self.files[i]))
            fa, fb = (rng.random() < 0.5, rng.random() < 0.5) if self.hflip else (False, False)
            try:
                target = self._load(i, a, f"{seed}:{k}:target", fa, failures)
                source = self._load(i, b, f"{seed}:{k}:source", fb, failures)
            except _IdentityUnreadable:
                continue
            return {"target": target, "source": source, "identity": i, "failures": failures}
        raise InputError(f"training data {self.root}: no crop of any identity could be decoded "
                         f"({len(failures)} failure(s), e.g. {failures[0][0]}: {failures[0][1]})")

    def __getitem__(self, item: int) -> dict[str, Any]:
        """dict(target [3,S,S], source [3,S,S] float32 RGB [0,1], identity int), drawn with the dataset's own
        seeded generator (the loader uses ``draw`` with per-row seeds instead)."""
        item = check_integer(item, "FaceCropDataset index", low=-len(self), high=len(self) - 1) % len(self)
        out = self.draw(item, self._rng.getrandbits(64))
        self.note_failures(out.pop("failures"))
        return out

    def note_failures(self, failures: list[tuple[str, str]]) -> None:
        """Record files that failed to decode (in the main process); each new one is logged once."""
        for path, reason in failures:
            p = Path(path)
            if p not in self.load_failures:
                self.load_failures[p] = reason
                msg = f"training data: skipped {p}: {reason}; another photo of the same identity is used"
                if self.log is not None:
                    self.log(msg)
                else:
                    warnings.warn(msg, stacklevel=3)


class _IdentityUnreadable(Exception):
    def __init__(self, item: int) -> None:
        super().__init__(item)
        self.item = item


# --------------------------------------------------------------------------------------------------- loader

def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The dataset order of one epoch (the official DataLoader shuffle=True), a pure function of the seed."""
    order = list(range(n))
    random.Random(f"epoch:{seed}:{epoch}").shuffle(order)
    return order


class _Rows:
    """The rows (item, draw seed) of one rank, batch after batch, from (epoch, position) on, forever.

    A global batch k of an epoch is ``order[k*G:(k+1)*G]`` with G = batch_size * world_size; rank r takes the
    block ``r*B..(r+1)*B-1``. The draw seed of a row is (seed, epoch, global row), so it is rank-independent."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world_size: int, drop_last: bool,
                 epoch: int, position: int) -> None:
        self.n, self.b, self.seed, self.rank, self.world, self.drop_last = n, batch_size, seed, rank, world_size, \
            drop_last
        self.epoch, self.position = epoch, position

    def __iter__(self) -> Iterator[list[tuple[int, str]]]:
        g = self.b * self.world
        epoch, pos = self.epoch, self.position
        while True:
            order = _epoch_order(self.n, self.seed, epoch)
            per_epoch = batches_per_epoch(self.n, self.b, self.world, self.drop_last)
            while pos < per_epoch:
                lo = pos * g + self.rank * self.b
                rows = range(lo, min(lo + self.b, self.n))
                yield [(order[j], f"row:{self.seed}:{epoch}:{j}") for j in rows]
                pos += 1
            epoch, pos = epoch + 1, 0


def batches_per_epoch(n: int, batch_size: int, world_size: int = 1, drop_last: bool = True) -> int:
    """Batches per epoch of ``n`` identities (per rank; every rank gets the same number)."""
    g = batch_size * world_size
    return n // g if drop_last else -(-n // g)


class _Rowset(Dataset):
    """The dataset addressed by rows (item, draw seed), as the DataLoader's batch sampler yields them."""

    def __init__(self, dataset: FaceCropDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, row: tuple[int, str]) -> dict[str, Any]:
        return self.dataset.draw(*row)


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Items -> dict(target [B,3,S,S], source [B,3,S,S], identity [B] int64) plus their decode failures."""
    return {"target": torch.stack([it["target"] for it in items]),
            "source": torch.stack([it["source"] for it in items]),
            "identity": torch.tensor([it["identity"] for it in items], dtype=torch.int64),
            "failures": [f for it in items for f in it["failures"]]}


def _worker_init(worker_id: int) -> None:
    """Per-worker seeding (deterministic; the draws themselves use per-row seeds and need none)."""
    info = torch.utils.data.get_worker_info()
    base = int(info.seed) if info is not None else 0
    random.seed(base)
    np.random.seed(base % 2**32)


class FaceBatchLoader:
    """Endless iterator of training batches (see ``make_loader``) with ``state_dict`` / ``load_state_dict``.

    Each ``next()`` gives dict(target [B,3,S,S], source [B,3,S,S] float32 RGB [0,1], identity [B] int64); epochs
    restart by themselves. ``epoch`` and ``position`` count the batches handed out (not those prefetched).
    """

    def __init__(self, dataset: FaceCropDataset, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, drop_last: bool = True, pin_memory: bool = False) -> None:
        if not isinstance(dataset, FaceCropDataset):
            raise InputError(f"make_loader: expected a FaceCropDataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = check_integer(batch_size, "make_loader: batch_size", low=1)
        self.world_size = check_integer(world_size, "make_loader: world_size", low=1)
        self.rank = check_integer(rank, "make_loader: rank", low=0, high=self.world_size - 1)
        self.num_workers = check_integer(num_workers, "make_loader: num_workers", low=0)
        self.seed = check_integer(seed, "make_loader: seed")
        self.drop_last = bool(drop_last)
        self.pin_memory = bool(pin_memory)
        g = self.batch_size * self.world_size
        n = len(dataset)
        if not self.drop_last and self.world_size > 1:
            raise InputError("make_loader: drop_last=False needs world_size 1 (every rank must get a full batch)")
        if self.drop_last and n < g:
            raise InputError(f"training data {dataset.root}: {n} usable identit{'y' if n == 1 else 'ies'}, but a "
                             f"batch needs {g} different identities (batch size {self.batch_size} x "
                             f"{self.world_size} process(es)); lower the batch size or add identity folders")
        self.epoch = 0
        self.position = 0
        self._it: Iterator[dict[str, Any]] | None = None

    @property
    def batches_per_epoch(self) -> int:
        return batches_per_epoch(len(self.dataset), self.batch_size, self.world_size, self.drop_last)

    def _start(self) -> Iterator[dict[str, Any]]:
        rows = _Rows(len(self.dataset), self.batch_size, self.seed, self.rank, self.world_size, self.drop_last,
                     self.epoch, self.position)
        loader = DataLoader(_Rowset(self.dataset), batch_sampler=rows, collate_fn=_collate,
                            num_workers=self.num_workers, pin_memory=self.pin_memory,
                            worker_init_fn=_worker_init if self.num_workers else None,
                            generator=torch.Generator().manual_seed(self.seed),
                            persistent_workers=False)
        return iter(loader)

    def __iter__(self) -> FaceBatchLoader:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            self._it = self._start()
        batch = next(self._it)
        self.dataset.note_failures(batch.pop("failures"))
        self.position += 1
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: the next batch is batch ``position`` of epoch ``epoch`` of this seed (the draws
        are pure functions of these, so this is the whole random state)."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "global_batch_size": self.batch_size * self.world_size, "num_identities": len(self.dataset),
                "drop_last": self.drop_last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (seed, epoch, position). The dataset size and the global batch size
        (batch size x world size) must be those of the run that saved it; prefetched batches are discarded."""
        need = ("seed", "epoch", "position", "global_batch_size", "num_identities")
        missing = [k for k in need if k not in state]
        if missing:
            raise InputError(f"loader state: missing {', '.join(missing)}; expected a FaceBatchLoader.state_dict()")
        g = self.batch_size * self.world_size
        if int(state["global_batch_size"]) != g:
            raise InputError(f"loader state: saved with a global batch of {state['global_batch_size']} "
                             f"(batch size x processes), this run has {g}; resume with the same batch size and "
                             "number of processes")
        if int(state["num_identities"]) != len(self.dataset):
            raise InputError(f"loader state: saved for {state['num_identities']} identities, the training data "
                             f"{self.dataset.root} now has {len(self.dataset)}; the batches cannot be reproduced")
        if bool(state.get("drop_last", True)) != self.drop_last:
            raise InputError("loader state: saved with a different drop_last")
        seed = check_integer(state["seed"], "loader state: seed")
        epoch = check_integer(state["epoch"], "loader state: epoch", low=0)
        position = check_integer(state["position"], "loader state: position", low=0,
                                 high=self.batches_per_epoch - 1)
        self.close()
        self.seed, self.epoch, self.position = seed, epoch, position

    def close(self) -> None:
        """Stop the worker processes (the next ``next()`` starts again from the current position)."""
        it, self._it = self._it, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if callable(shutdown):
            shutdown()


def make_loader(dataset: FaceCropDataset, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                num_workers: int = 0, drop_last: bool = True, pin_memory: bool = False) -> FaceBatchLoader:
    """An endless, deterministic, resumable loader of ``dataset`` batches (a ``FaceBatchLoader``).

    Each epoch visits the identities in a seeded random order (a batch holds B different identities); with
    ``world_size`` W, rank ``rank`` gets rows rank*B..(rank+1)*B-1 of the global batch of W*B rows (the batch
    one process with batch W*B and the same seed gets). ``num_workers`` DataLoader worker processes decode in
    parallel without changing any batch. ``drop_last`` False (one process only) also yields each epoch's last,
    smaller batch.
    """
    return FaceBatchLoader(dataset, batch_size, seed=seed, rank=rank, world_size=world_size,
                           num_workers=num_workers, drop_last=drop_last, pin_memory=pin_memory)
