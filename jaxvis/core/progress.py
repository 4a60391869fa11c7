"""The progress bar every long loop shows (tqdm on stderr; gone when the loop ends)."""

from __future__ import annotations

import sys


def progress_bar(enabled: bool, total: int | None, description: str, unit: str, done: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit=unit, desc=description[:40], leave=False,
                file=sys.stderr)
