"""Fetching data files: download (or copy), verify the pinned SHA-256, write atomically.

    files = glue_files()                                   # the GLUE tasks' files, pinned (glue_sources.py)
    fetch(files_of(files, "SST-2"), Path("~/.cache/minibert/data"))   # download, verify, write; a progress bar
    main(FILES, __doc__, argv)                              # a data/prepare_*.py script's command line

A file (`DataFile`) has its path under the output folder, its pinned SHA-256, and sources tried
in order (`Source`: a URL, or a member of a zip archive at a URL whose own SHA-256 may be
pinned). A file is either copied from a local folder (`--from DIR`, holding the same relative
paths) or downloaded; either way its SHA-256 must equal the pinned one before it is written,
atomically (a temporary file renamed into place: an interrupted download leaves no half file).
A file already there with the right checksum is left alone.

Where only a file's archive has a published checksum (GLUE's MNLI, QQP and QNLI zips), the
archive's SHA-256 is checked before a member is read; the file itself then has no pin
(`DataFile.sha256` None): a download is verified through its archive, and a copy from `--from`
is written with its SHA-256 printed and a note that it is unverified.

The scripts in the repository's data/ folder and the commands' own fetching of a missing GLUE
task (`roots.find_data`) both use this module; standard library and tqdm only. Not here: which
files a data set has (`glue_sources.py`, the scripts), or where the commands look (`roots.py`).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 16  # bytes read per progress-bar update


@dataclass(frozen=True)
class Source:
    """A download location: a file URL, or a member of a zip archive at `url` (whose SHA-256,
    when pinned, is checked before the member is read)."""

    url: str
    member: str | None = None
    sha256: str | None = None

    def __str__(self) -> str:
        return f"{self.url} [{self.member}]" if self.member else self.url


@dataclass(frozen=True)
class DataFile:
    """One output file: its path under the output folder, pinned SHA-256, download sources.

    Sources are tried in order until one gives the pinned bytes (the first is the canonical
    public source; later ones are the exact snapshots the pinned checksums were taken from).
    sha256 None: only the source archives are pinned (see the module docstring).
    """

    path: str
    sha256: str | None
    sources: tuple


class PrepareError(Exception):
    """A file could not be obtained or failed verification (the message says which and why)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(url: str, timeout: float, progress: bool = False) -> bytes:
    """The bytes at `url`; a progress bar on stderr when `progress` (its size when the server says it)."""
    request = urllib.request.Request(url, headers={"User-Agent": "minibert-data/1.0"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if not progress:
                return response.read()
            from tqdm import tqdm

            size = int(response.headers.get("Content-Length") or 0) or None
            parts = []
            with tqdm(total=size, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], file=sys.stderr,
                      leave=False) as bar:
                while chunk := response.read(CHUNK):
                    parts.append(chunk)
                    bar.update(len(chunk))
            return b"".join(parts)
    except Exception as exc:  # URLError, HTTPError, timeouts, ...
        raise PrepareError(f"could not download {url}: {exc}") from exc


def _zip_member(archive: bytes, member: str, url: str) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            names = [n for n in z.namelist() if n == member or n.endswith("/" + member)]
            if not names:
                raise PrepareError(f"{url} has no member {member!r}")
            return z.read(names[0])
    except zipfile.BadZipFile as exc:
        raise PrepareError(f"{url} is not a valid zip archive: {exc}") from exc


def obtain_by_download(f: DataFile, timeout: float, cache: dict, progress: bool = False,
                       log=print) -> tuple[bytes, str]:
    """Try each source in order; return (bytes, source) of the first with the pinned sha256.
    cache: {url: bytes}, so that the files of one archive download it once."""
    problems = []
    for source in f.sources:
        try:
            if source.url not in cache:
                log(f"  downloading {source.url}")
                cache[source.url] = download(source.url, timeout, progress)
            data = cache[source.url]
            if source.sha256 is not None and sha256_hex(data) != source.sha256:
                raise PrepareError(f"checksum mismatch for {source.url}: expected sha256 {source.sha256}, got "
                                   f"{sha256_hex(data)}")
            if source.member:
                data = _zip_member(data, source.member, source.url)
        except PrepareError as exc:
            problems.append(str(exc))
            continue
        got = sha256_hex(data)
        if f.sha256 is None and source.sha256 is not None:
            return data, f"{source} (archive sha256 verified)"
        if got == f.sha256:
            return data, str(source)
        problems.append(f"checksum mismatch for {source}: expected sha256 {f.sha256}, got {got}")
    raise PrepareError(f"{f.path}: no source gave the expected file:\n    " + "\n    ".join(problems))


def obtain_by_copy(f: DataFile, from_dir: Path) -> tuple[bytes, str]:
    src = from_dir / f.path
    if not src.is_file():
        raise PrepareError(f"{f.path}: not found in --from folder (looked for {src})")
    data = src.read_bytes()
    got = sha256_hex(data)
    if f.sha256 is None:  # only its archive is pinned: copied as it is, said so
        return data, f"{src} (NOT verified: only its archive's sha256 is pinned; this file's is {got})"
    if got != f.sha256:
        raise PrepareError(
            f"checksum mismatch for {src}: expected sha256 {f.sha256}, got {got} "
            "(the file is corrupted, truncated or a different version; nothing was written)"
        )
    return data, str(src)


def write_atomically(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(files: list[DataFile], out: Path, timeout: float = 60.0, progress: bool = True, log=print) -> None:
    """Download, verify and write `files` under `out`, each only once verified: all of them, or a
    PrepareError naming what failed (the files verified before it stay: each was written whole)."""
    cache: dict = {}
    obtained = [(f, obtain_by_download(f, timeout, cache, progress, log)[0]) for f in files]  # verify all first
    for f, data in obtained:
        write_atomically(Path(out) / f.path, data)


def _pin(f: DataFile) -> str:
    return f.sha256 or f"(of its archive) {f.sources[0].sha256}"


def build_parser(description: str, files: list[DataFile], groups: bool = False, default_out: Path | None = None,
                 ) -> argparse.ArgumentParser:
    listing = "\n".join(f"  {f.path}\n      sha256 {_pin(f)}\n      from   {f.sources[0]}" for f in files)
    parser = argparse.ArgumentParser(
        description=description,
        epilog=(
            "files written (under --out), with their pinned SHA-256 and canonical source:\n"
            f"{listing}\n\nExit status 0 when every file is present and verified, 1 otherwise."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from", dest="from_dir", metavar="DIR", type=Path,
        help="copy from this local folder (the same layout, e.g. another machine's data/) instead of downloading",
    )
    parser.add_argument("--out", metavar="DIR", type=Path, default=default_out,
                        help=f"output folder (default: {default_out})")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per download (default 60)")
    if groups:
        folders = list(dict.fromkeys(f.path.split("/")[0] for f in files))  # in the files' order
        parser.add_argument("--only", nargs="+", metavar="FOLDER", type=lambda name: _folder(name, folders),
                            help=f"only these folders (default: all): {', '.join(folders)}")
    return parser


def _folder(name: str, folders: list[str]) -> str:
    """A folder name of --only, case-insensitively ('mnli' -> 'MNLI')."""
    for folder in folders:
        if folder.lower() == name.lower():
            return folder
    raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(folders)}")


def main(files: list[DataFile], description: str, argv=None, groups: bool = False,
         default_out: Path | None = None) -> int:
    """A prepare script: obtain, verify and write every file; print one line per file; return the exit status.

    groups: add `--only FOLDER ...`, which keeps the files under those top-level folders."""
    args = build_parser(description, files, groups, default_out).parse_args(argv)
    if args.from_dir is not None and not args.from_dir.is_dir():
        print(f"error: --from folder {args.from_dir} does not exist", file=sys.stderr)
        return 1
    if getattr(args, "only", None):
        files = [f for f in files if f.path.split("/")[0] in args.only]
    cache: dict = {}
    failures = 0
    for f in files:
        dest = args.out / f.path
        if dest.is_file() and f.sha256 is None:
            print(f"ok      {dest} (already present; only its archive's sha256 is pinned)")
            continue
        if dest.is_file() and sha256_hex(dest.read_bytes()) == f.sha256:
            print(f"ok      {dest} (already present, sha256 verified)")
            continue
        try:
            if args.from_dir is not None:
                data, origin = obtain_by_copy(f, args.from_dir)
            else:
                data, origin = obtain_by_download(f, args.timeout, cache, log=lambda m: print(m, flush=True))
        except PrepareError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        write_atomically(dest, data)
        print(f"wrote   {dest} ({len(data):,} bytes{', sha256 verified' if f.sha256 else ''}) from {origin}")
    if failures:
        print(f"error: {failures} of {len(files)} file(s) failed", file=sys.stderr)
        return 1
    return 0
