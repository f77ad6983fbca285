"""Where a dataset's images come from, and how one is read: decoded, converted, resized.

`open_source(source)` accepts
  * a directory: every file with an image extension below it (recursively), in sorted path order,
    named by its path relative to the directory; other files are listed in `skipped`;
  * a glob pattern (``"photos/**/*.jpg"``): the matching files, sorted, named by their paths;
  * a ``.npz`` file: the images of one array (``[n, H, W, C]`` or ``[n, H, W]``, uint8, uint16 or
    floats in [0, 1]), named ``"<array>/<row>"``; rows are read one at a time, never the whole array;
  * a NumPy array ``[n, H, W, C]`` or any Python iterable of ``[H, W, C]`` / ``[H, W]`` arrays,
    named by position (``"0"``, ``"1"``, ...).

`LabelMapSource(source)` opens a second source of label maps (segments) matched to the images.

A source only lists `Item`s (position, id, raw); `read_image(raw, ...)` turns a raw item into a
float32 [H, W, C] image. It runs in worker processes (`daxjax.dataset.pipeline`), so raw items are small
and picklable (a path, an npz reference, or the array itself for in-memory sources), and an image
that cannot be read raises `ImageReadError` with the reason, which becomes that image's error row.
A file a source lists is an item even when it cannot be opened (a dangling or looping symbolic
link, no permission): it becomes an error row, never silently missing.

Pixel values keep their meaning: uint8 is divided by 255, other unsigned integers (16-bit PNGs
and TIFFs) by their type's maximum (65535), floats must lie in [0, 1]; anything else (signed
integers, floats outside [0, 1]) is an error row saying why, never clipped or rescaled by guess.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import struct
import threading
import zipfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

#: File name endings read as images (case-insensitive). Other files in a directory are not
#: images of the dataset; `DirectorySource.skipped` lists them so that none goes unnoticed.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm", ".npy")


class SourceError(ValueError):
    """A dataset source that cannot be opened as given (a missing path, an empty directory, ...)."""


class ImageReadError(ValueError):
    """One image that cannot be read or is not a valid image; its message is the error row's reason."""


@dataclass(frozen=True)
class Item:
    """One image of a source: its place in input order, its name, and how to read it."""

    position: int
    id: str
    raw: Any  # a path (str), an `NpzRow`, or an array [H, W, C] / [H, W]


@dataclass(frozen=True)
class NpzRow:
    """Row `row` of array `key` in the .npz file `path`."""

    path: str
    key: str
    row: int


class DirectorySource:
    """Image files below a directory, sorted by relative path (ids: the relative paths)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        files, skipped = [], []
        for path in sorted(p for p in self.root.rglob("*") if _is_listed(p)):
            rel = path.relative_to(self.root).as_posix()
            if any(part.startswith(".") for part in Path(rel).parts):
                continue  # hidden files and folders (.DS_Store, .git, ...)
            (files if path.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(rel)
        if not files:
            raise SourceError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in directory {self.root}")
        self.files = files
        self.skipped = skipped
        self.description = f"directory {self.root} ({len(files)} images)"

    def __len__(self) -> int:
        return len(self.files)

    def items(self) -> Iterator[Item]:
        for i, rel in enumerate(self.files):
            yield Item(i, rel, str(self.root / rel))


def _is_listed(path: Path) -> bool:
    """Whether a directory entry is a file of the source: a file, or a symbolic link that is not a
    directory (a dangling or looping link is listed, so that it becomes an error row, not a gap)."""
    try:
        return path.is_file() or (path.is_symlink() and not path.is_dir())
    except OSError:  # a link loop on platforms where is_file raises
        return True


class GlobSource:
    """Files matching a glob pattern (``**`` recurses), sorted; ids: the matched paths."""

    def __init__(self, pattern: str):
        self.files = sorted(p for p in glob.glob(pattern, recursive=True) if _is_listed(Path(p)))
        if not self.files:
            raise SourceError(f"no files match {pattern!r}")
        self.skipped: list[str] = []
        self.description = f"glob {pattern!r} ({len(self.files)} files)"

    def __len__(self) -> int:
        return len(self.files)

    def items(self) -> Iterator[Item]:
        for i, path in enumerate(self.files):
            yield Item(i, path, path)


class NpzSource:
    """The images of one array in an .npz file (ids ``"<key>/<row>"``), read row by row."""

    def __init__(self, path: str | os.PathLike, key: str | None = None):
        self.path = str(path)
        try:
            with np.load(self.path) as archive:
                keys = list(archive.files)
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise SourceError(f"{self.path}: cannot read it as an .npz file: {err}") from err
        if key is None:
            if len(keys) != 1:
                image_like = [k for k in keys if k in ("images", "x", "arr_0")]
                if len(image_like) != 1:
                    raise SourceError(f"{self.path} holds arrays {keys}; say which holds the images "
                                      "(FILE.npz:KEY on the command line, NpzSource(path, key) in Python)")
                keys = image_like
            key = keys[0]
        if key not in keys:
            raise SourceError(f"{self.path} has no array {key!r}; it holds {keys}")
        self.key = key
        layout = _npz_header(self.path, key)
        shape, dtype = layout.shape, layout.dtype
        if len(shape) not in (3, 4):
            raise SourceError(f"{self.path}:{key} has shape {shape}; expected images [n, H, W, C] or [n, H, W]")
        self.shape, self.dtype = shape, dtype
        self.skipped: list[str] = []
        self.description = f"{self.path}:{key} ({shape[0]} images)"

    def __len__(self) -> int:
        return self.shape[0]

    def items(self) -> Iterator[Item]:
        for row in range(self.shape[0]):
            yield Item(row, f"{self.key}/{row}", NpzRow(self.path, self.key, row))


class ArraySource:
    """An in-memory array [n, H, W, C] or [n, H, W], or a Python iterable of images (ids: positions)."""

    def __init__(self, images: Iterable):
        self.images = images
        self.skipped: list[str] = []
        try:
            self._len: int | None = len(images)  # type: ignore[arg-type]
        except TypeError:
            self._len = None
        # A one-shot iterator (a generator) can be read once: images looked at before the main
        # pass (`first_items`) are kept here and replayed by `items`.
        self._one_shot = iter(images) is images
        self._head: list[Item] = []
        what = f"array {getattr(images, 'shape', '')}" if isinstance(images, np.ndarray) else type(images).__name__
        self.description = f"in-memory {what}".strip()

    def __len__(self) -> int:
        if self._len is None:
            raise TypeError("this source's length is not known before it is read")
        return self._len

    def items(self) -> Iterator[Item]:
        if not self._one_shot:
            for i, image in enumerate(self.images):
                yield Item(i, str(i), image)
            return
        head, self._head = self._head, []
        yield from head
        for i, image in enumerate(self.images, start=len(head)):
            yield Item(i, str(i), image)

    def first_items(self, limit: int) -> list[Item]:
        if not self._one_shot:
            return list(islice(self.items(), limit))
        for i, image in enumerate(islice(self.images, max(0, limit - len(self._head))), start=len(self._head)):
            self._head.append(Item(i, str(i), image))
        return self._head[:limit]


def first_items(source, limit: int) -> list[Item]:
    """The first `limit` items of a source, without using up a one-shot iterator."""
    if hasattr(source, "first_items"):
        return source.first_items(limit)
    return list(islice(source.items(), limit))


def source_length(source) -> int | None:
    """The number of images, or None for an iterable whose length is known only at its end."""
    try:
        return len(source)
    except TypeError:
        return None


def open_source(source) -> DirectorySource | GlobSource | NpzSource | ArraySource:
    """A source for a directory, glob pattern, .npz file (``FILE.npz`` or ``FILE.npz:KEY``),
    NumPy array or Python iterable of images; an object with `items()` is returned as it is."""
    if hasattr(source, "items") and hasattr(source, "description"):
        return source
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        path, _, key = text.rpartition(":") if ".npz:" in text else (text, "", "")
        if path.lower().endswith(".npz"):
            if not os.path.isfile(path):
                raise SourceError(f"no such .npz file: {path}")
            return NpzSource(path, key or None)
        if os.path.isdir(text):
            return DirectorySource(text)
        if glob.has_magic(text):
            return GlobSource(text)
        if os.path.isfile(text):
            return GlobSource(glob.escape(text))
        raise SourceError(f"no such file or directory: {text}")
    if isinstance(source, np.ndarray):
        if source.ndim not in (3, 4):
            raise SourceError(f"an image array must be [n, H, W, C] or [n, H, W]; got shape {source.shape}")
        return ArraySource(source)
    if isinstance(source, Iterable):
        return ArraySource(source)
    raise SourceError(f"cannot read images from a {type(source).__name__}: give a directory, a glob "
                      "pattern, an .npz file, an array [n, H, W, C] or an iterable of images")


class LabelMapSource:
    """Label maps (segment ids per pixel) for the images of another source, matched to them.

    `source` is anything `open_source` takes:
      * files (a directory or glob of .npy files): matched by id without the extension, so the
        map of image ``a/cat.png`` (directory source) is ``a/cat.npy`` in the label directory;
      * rows (an .npz array [n, H, W], an array or an iterable of [H, W] maps): row i is the map
        of the i-th image of the image source, in its input order.
    Each map has the shape of its image as stored (before resizing) and integer ids >= 0;
    `read_label_map` reads one, `segmentation.check_label_map` checks it.
    """

    def __init__(self, source):
        src = open_source(source)
        self.description = src.description
        self.by_position = not isinstance(src, (DirectorySource, GlobSource))
        self.raws: dict[Any, Any] = {}
        for item in src.items():
            key = self.key(item)
            if key in self.raws:
                raise SourceError(f"{self.description}: two label maps for {key!r}")
            self.raws[key] = item.raw

    def key(self, item: Item):
        """What matches an item (image or label map) here: its position, or its id without extension."""
        return item.position if self.by_position else os.path.splitext(item.id)[0]

    def raw_for(self, image: Item):
        """The raw label map of an image item (for `read_label_map`), or None when there is none."""
        return self.raws.get(self.key(image))


# ---------------------------------------------------------------------------------------------
# Reading one image (in worker processes).


def read_image(raw: Any, size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """Reads, converts and resizes one image: float32 [H, W, C] in [0, 1].

    size: (H, W) to resize to (bilinear, antialiased when shrinking; the aspect ratio is not
      kept), None: as stored. channels: 1 or 3 (colour -> grey by luminance, grey -> colour by
      replication; an alpha channel is dropped), None: as stored.
    Raises ImageReadError naming what is wrong.
    """
    if isinstance(raw, NpzRow):
        array = _npz_row(raw.path, raw.key, raw.row)
    elif isinstance(raw, str):
        array = _decode_file(raw)
    else:
        array = np.asarray(raw)
    return _standardise(array, size, channels)


def read_label_map(raw: Any) -> np.ndarray:
    """Reads one label map as stored: [H, W], values unchecked (`segmentation.check_label_map`).

    raw: a .npy file path, an `NpzRow` or an array (the items of a source of label maps; other
    files are refused, since decoded pictures are colours, not segment ids). [H, W, 1] is squeezed.
    Raises ImageReadError naming what is wrong.
    """
    if isinstance(raw, NpzRow):
        array = _npz_row(raw.path, raw.key, raw.row)
    elif isinstance(raw, str):
        if not raw.lower().endswith(".npy"):
            raise ImageReadError(f"label maps are read from .npy files (or an .npz); got {raw}")
        array = _decode_file(raw)
    else:
        array = np.asarray(raw)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ImageReadError(f"not a label map: shape {array.shape} (expected [H, W])")
    return array


def content_digest(raw: Any) -> str | None:
    """A digest of a raw item's content as the source holds it (BLAKE2b-128, hex): a file's bytes,
    or an .npz row's / array's values with their dtype and shape. It tells a resumed run that an
    image changed under the same id; it decodes nothing. None for a file that cannot be read (its
    error row says why)."""
    h = hashlib.blake2b(digest_size=16)
    try:
        if isinstance(raw, str):
            with open(raw, "rb") as f:
                return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
        array = _npz_row(raw.path, raw.key, raw.row) if isinstance(raw, NpzRow) else np.asarray(raw)
    except (OSError, ImageReadError):
        return None
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def image_shape(raw: Any) -> tuple[int, int, int]:
    """(H, W, C) of a raw item as stored (C after dropping alpha: 1 or 3)."""
    image = read_image(raw, None, None)
    return image.shape  # type: ignore[return-value]


# PIL modes of pixels wider than 8 bits: read as their numbers (uint16, int32, float32) and scaled
# by `_standardise`, since PIL's conversion to "L" clips them to 0..255 (16-bit grey came out white,
# floats in [0, 1] black).
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _decode_file(path: str) -> np.ndarray:
    """A file's pixels as stored: [H, W] or [H, W, C] of the file's own dtype. Raises ImageReadError."""
    try:
        handle = open(path, "rb")
    except OSError as err:  # missing, a dangling or looping link, no permission, a directory
        raise ImageReadError(f"cannot open the file: {err.strerror or err}") from None
    with handle:
        if path.lower().endswith(".npy"):
            try:
                return np.load(handle, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise ImageReadError(f"cannot read .npy file: {err}") from err
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(handle) as image:
                image.load()
                if image.mode in _WIDE_MODES:
                    return np.asarray(image)
                return np.asarray(image.convert("L" if image.mode in ("1", "L", "LA") else "RGB"))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise ImageReadError(f"cannot decode as an image: {err}") from err


def _standardise(array: np.ndarray, size, channels) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ImageReadError(f"not an image: shape {array.shape} (expected [H, W], [H, W, 1|3|4])")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageReadError(f"empty image: shape {array.shape}")
    if array.shape[-1] == 4:
        array = array[..., :3]
    if np.issubdtype(array.dtype, np.unsignedinteger):  # 8 or 16 bits: the type's range is the image's
        image = array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)
    elif np.issubdtype(array.dtype, np.floating):
        image = array.astype(np.float32)
        if not np.isfinite(image).all():
            raise ImageReadError("image has NaN or inf pixels")
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 1.0:
            raise ImageReadError(f"float image outside [0, 1] (min {low:.4g}, max {high:.4g}); "
                                 "store uint8 or divide by 255 (nothing is clipped)")
    else:
        raise ImageReadError(f"image dtype {array.dtype} is not unsigned integers (uint8, uint16) or floats in "
                             "[0, 1]: the range its values stand for is unknown; convert it to one of those")
    if channels is not None and image.shape[-1] != channels:
        if channels == 1:  # ITU-R 601 luma, as PIL's "L" conversion
            image = (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        else:
            image = np.repeat(image, 3, axis=-1)
    if size is not None and tuple(image.shape[:2]) != tuple(size):
        image = _resize(image, size)
    return np.ascontiguousarray(image, dtype=np.float32)


def _resize(image: np.ndarray, size) -> np.ndarray:
    from skimage.transform import resize

    out = resize(image, (size[0], size[1], image.shape[-1]), order=1, mode="edge",
                 anti_aliasing=bool(size[0] < image.shape[0] or size[1] < image.shape[1]),
                 preserve_range=True)
    # Interpolation stays within the input's range up to round-off; keep [0, 1] exact.
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class _NpzArray:
    """Where array `key` of an .npz file lies: its shape and dtype, the offset of its first value in
    the member's data (after the .npy header), whether the member is compressed, and for a stored
    (uncompressed) member the offset of its data in the .npz file itself."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    compressed: bool
    file_offset: int | None


def _npz_header(path: str, key: str) -> _NpzArray:
    """The layout of array `key` in an .npz (cached while the file's size and time stay the same)."""
    stat = os.stat(path)
    return _npz_layout(path, key, (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=16)
def _npz_layout(path: str, key: str, stamp: tuple[int, int]) -> _NpzArray:
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise SourceError(f"{path}:{key} uses .npy format {version}; save it with NumPy's default")
            shape, fortran, dtype = read_header(member)
            offset = member.tell()
    if fortran:
        raise SourceError(f"{path}:{key} is stored in Fortran order; save it C-contiguous")
    compressed = info.compress_type != zipfile.ZIP_STORED
    file_offset = None
    if not compressed:
        # The member's data follows its local header: 30 bytes, then the name and an extra field
        # whose lengths the header's last two 16-bit fields give (they may differ from the central
        # directory's, so they are read here).
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        file_offset = info.header_offset + 30 + name_length + extra_length
    return _NpzArray(tuple(shape), dtype, offset, compressed, file_offset)


class _MemberCursor:
    """An open compressed .npz member that reads forward: rows asked for in increasing order (as
    a worker reads its batches) cost only the bytes between them; a row behind the cursor reopens
    the member. One per (file, array, file version) in each process."""

    def __init__(self, path: str, key: str):
        self.archive = zipfile.ZipFile(path)
        self.member = self.archive.open(f"{key}.npy")
        self.lock = threading.Lock()

    def read(self, start: int, size: int) -> bytes:
        with self.lock:
            if start < self.member.tell():
                self.member.close()
                self.member = self.archive.open(self.member.name)
            self.member.seek(start)  # forward: decompresses and drops what lies between
            return self.member.read(size)


@functools.lru_cache(maxsize=4)
def _cursor(path: str, key: str, stamp: tuple[int, int]) -> _MemberCursor:
    return _MemberCursor(path, key)


def _npz_row(path: str, key: str, row: int) -> np.ndarray:
    """One row of an .npz array, reading only that row: a seek in the file for stored members,
    a forward read of the member for compressed ones (`_MemberCursor`)."""
    layout = _npz_header(path, key)
    size = int(np.prod(layout.shape[1:])) * layout.dtype.itemsize
    start = layout.offset + row * size
    if layout.file_offset is not None:
        with open(path, "rb") as f:
            f.seek(layout.file_offset + start)
            data = f.read(size)
    else:
        stat = os.stat(path)
        data = _cursor(path, key, (stat.st_mtime_ns, stat.st_size)).read(start, size)
    if len(data) != size:
        raise ImageReadError(f"{path}:{key} row {row} is truncated")
    return np.frombuffer(data, dtype=layout.dtype).reshape(layout.shape[1:])
