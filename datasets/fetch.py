"""Where each public dataset comes from and where its files go.

python -m datasets.fetch                 # list the datasets
python -m datasets.fetch rees46          # what to download, from where, and where to put it
python -m datasets.fetch yoochoose --download   # fetch it, where a direct URL exists

Every dataset here is behind a login or terms page (Kaggle, Tianchi, CodaLab) except YooChoose's
archive, so the usual answer is a manual download; this command says exactly which files and
which ``dataset.path``. Nothing in the harness downloads at run time: a missing file is a
one-line error pointing here. No checksum is pinned for the full files (they could not be
verified when this was written); ``--download`` prints the SHA-256 it got, to pin in your config.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    name: str
    page: str
    files: str
    put_at: str  # the config's default dataset.path, or where to put the files
    terms: str
    url: str | None = None  # a direct download, where one exists
    sha256: str | None = None
    size: str | None = None


SOURCES = {
    s.name: s
    for s in (
        Source(
            "diginetica",
            "https://competitions.codalab.org/competitions/11161 (CIKM Cup 2016, track 2)",
            "train-item-views.csv; optionally product-categories.csv, train-purchases.csv, "
            "train-queries.csv, products.csv",
            "data/diginetica/ (then dataset.path=data/diginetica)",
            "competition data; research use",
        ),
        Source(
            "yoochoose",
            "RecSys Challenge 2015 (also on Kaggle: chadgostopp/recsys-challenge-2015)",
            "yoochoose-clicks.dat and yoochoose-buys.dat (from yoochoose-data.7z)",
            "data/yoochoose/ (then dataset.path=data/yoochoose)",
            "challenge data; research use",
            url="https://s3-eu-west-1.amazonaws.com/yc-rdata/yoochoose-data.7z",
            size="a 7z archive; extract it with 7z x",
        ),
        Source(
            "retailrocket",
            "https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset",
            "events.csv (and optionally item_properties_part1.csv, item_properties_part2.csv)",
            "data/retailrocket/ (the config's default dataset.path)",
            "license on the Kaggle page (check it); Kaggle login needed",
        ),
        Source(
            "taobao",
            "https://tianchi.aliyun.com/dataset/649 (UserBehavior)",
            "UserBehavior.csv (about 3.5 GB, 100M rows, no header)",
            "data/taobao/UserBehavior.csv (the config's default dataset.path)",
            "Tianchi terms: accept them on the page (Alibaba account needed)",
        ),
        Source(
            "rees46",
            "https://www.kaggle.com/datasets/mkechinov/ecommerce-behavior-data-from-multi-category-store",
            "one or more monthly files, e.g. 2019-Oct.csv.gz (about 42M rows; read as downloaded)",
            "data/rees46/ (then dataset.path=data/rees46 reads every month in it)",
            "terms on the Kaggle page; credit REES46 / Open CDP",
        ),
        Source(
            "otto",
            "https://github.com/otto-group/recsys-dataset (links the Kaggle download)",
            "train.jsonl (12.9M sessions, about 220M events); test.jsonl optional",
            "data/otto/ (then dataset.path=data/otto)",
            "license in the repository README (check it)",
        ),
        Source(
            "jd_micro",
            "https://github.com/guyulongcs/WSDM2020_HUP (full data from the authors on request)",
            "JD_Applicances / JD_Computers session files (one session per line)",
            "data/jd_micro/ (then dataset.path=data/jd_micro reads every *.txt in it)",
            "research use only, cite the WSDM 2020 paper (README of the repository)",
        ),
        Source(
            "web_bots",
            "Zenodo: 'Web Bot Detection Dataset' (Iliou et al., 2021), phase 1",
            "phase1 web logs (*.log) and a labels.csv with session_id,label (see the sample)",
            "data/web_bots/ (then dataset.path=data/web_bots)",
            "see the Zenodo record; cite the paper",
        ),
        Source(
            "talkingdata",
            "https://www.kaggle.com/competitions/talkingdata-adtracking-fraud-detection",
            "train.csv (about 185M rows; train_sample.csv is the organisers' 100k-row sample)",
            "data/talkingdata/ (then dataset.path=data/talkingdata)",
            "Kaggle competition rules (accept them on the page)",
        ),
    )
}


class FetchError(Exception):
    """A download that cannot be done here; the message says what to do instead."""


def instructions(source: Source) -> str:
    lines = [
        f"{source.name}",
        f"  from:   {source.page}",
        f"  files:  {source.files}",
        f"  put at: {source.put_at}",
        f"  terms:  {source.terms}",
    ]
    if source.url:
        lines.append(f"  direct: {source.url} ({source.size}); `--download` fetches it")
    lines.append(
        f"  check:  python -m benchmark.run.describe dataset={source.name} dataset.path=..."
    )
    return "\n".join(lines)


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 30.0) -> str:
    """Stream ``url`` to ``dest`` (via a temporary file) and return its SHA-256; a pinned
    ``sha256`` that does not match removes the file and raises."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise FetchError(
            f"cannot download {url} ({err}); this machine may be offline: download it "
            f"elsewhere and put it at {dest}"
        ) from err
    got = digest.hexdigest()
    if sha256 and got != sha256:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"{url}: SHA-256 {got} does not match the pinned {sha256}; not kept")
    shutil.move(tmp, dest)
    return got


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")]
    if not names:
        print(
            "datasets: "
            + ", ".join(SOURCES)
            + "\nusage: python -m datasets.fetch <name> [--download]"
        )
        return 0
    name = names[0]
    if name not in SOURCES:
        print(f"error: unknown dataset {name!r}; known: {', '.join(SOURCES)}", file=sys.stderr)
        return 2
    source = SOURCES[name]
    print(instructions(source))
    if "--download" in argv:
        if not source.url:
            print(
                f"error: {name} has no direct download; get it from {source.page}", file=sys.stderr
            )
            return 2
        dest = Path("data") / name / source.url.rsplit("/", 1)[-1]
        try:
            got = download(source.url, dest, source.sha256)
        except FetchError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"saved {dest} (sha256 {got})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
