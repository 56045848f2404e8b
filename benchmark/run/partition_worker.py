"""A worker process of the data stage: one job on one partition of a big table.

``python -m benchmark.run.partition_worker FOLDER INDEX`` reads task ``INDEX`` (a function of
:mod:`benchmark.run.data`, such as ``prepare_partition``, and its arguments) from ``FOLDER``
and writes its result there, or the error it raised, which the parent raises as its own
(``benchmark.run.workers``). Started by :func:`benchmark.run.data.run_workers`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.run.workers import read_task, write_error, write_result


def main(folder: Path, index: int) -> None:
    function, arguments = read_task(folder, index)
    try:
        result = function(*arguments)
    except Exception as error:  # the parent raises it: one clear line where it is the user's
        write_error(folder, index, error)
        return
    write_result(folder, index, result)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
