"""MovieLens-100k as replay logs, from the RecBole wheel on PyPI (no other download).

    python -m load.movielens --out data/        # data/ml-100k.csv and data/ml-100k-genres.csv

``ml-100k.csv``: user, item, timestamp (unix s), rating. ``ml-100k-genres.csv``: the same
with the movie's first genre as ``category``. Then, e.g.:

    stream replay data/ml-100k.csv --positive-min-rating 4 --json r.json --plot r.png
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MEMBER = "recbole/dataset_example/ml-100k/"


def fetch_wheel(cache: Path) -> Path:
    wheels = sorted(cache.glob("recbole-*.whl"))
    if wheels:
        return wheels[-1]
    cache.mkdir(parents=True, exist_ok=True)
    print(f"movielens: downloading the recbole wheel into {cache}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "recbole==1.2.1",
                    "-d", str(cache)], check=True)
    return sorted(cache.glob("recbole-*.whl"))[-1]


def write_logs(wheel: Path, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        inter = z.read(MEMBER + "ml-100k.inter").decode().splitlines()
        item_lines = z.read(MEMBER + "ml-100k.item").decode("latin-1").splitlines()
    genre = {}
    for line in item_lines[1:]:
        f = line.split("\t")
        genre[f[0]] = f[3].split(" ")[0] if len(f) > 3 and f[3] else ""
    plain, with_genres = out / "ml-100k.csv", out / "ml-100k-genres.csv"
    with open(plain, "w") as a, open(with_genres, "w") as b:
        a.write("user,item,timestamp,rating\n")
        b.write("user,item,timestamp,rating,category\n")
        for line in inter[1:]:
            user, item, rating, ts = line.split("\t")
            a.write(f"{user},{item},{ts},{rating}\n")
            b.write(f"{user},{item},{ts},{rating},{genre.get(item, '')}\n")
    return plain, with_genres


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="data", help="folder for the two CSV files (default: data)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "stream-wheels"),
                   help="where the wheel is kept between runs")
    args = p.parse_args()
    for path in write_logs(fetch_wheel(Path(args.cache)), Path(args.out)):
        print(f"movielens: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
