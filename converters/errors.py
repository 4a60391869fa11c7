"""Errors raised while finding, reading and converting weight files."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class ConversionError(Exception):
    """Base class: something about a weight file or state_dict is wrong."""


class WeightFileError(ConversionError, OSError):
    """A weight file cannot be read: missing, corrupt, truncated, or of an unknown format."""


class UnsafeWeightFileError(WeightFileError):
    """A pickle that would run code (or load objects other than tensors) when unpickled."""


class ChecksumError(WeightFileError):
    """A known weight file whose sha256 differs from the published one."""


class WeightsNotFoundError(ConversionError, FileNotFoundError):
    """No pretrained weights for an architecture anywhere we are allowed to look."""


class StateDictMismatchError(ConversionError, ValueError):
    """A state_dict that does not fit the target architecture, key for key."""

    def __init__(
        self,
        target: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        wrong_shape: Sequence[tuple[str, tuple, tuple]] = (),
        expected_keys: Sequence[str] = (),
    ):
        self.missing, self.unexpected, self.wrong_shape = list(missing), list(unexpected), list(wrong_shape)
        lines = [f"state_dict does not fit {target}:"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): {_listing(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): {_listing(self.unexpected)}")
            hints = [f"{k} -> {nearest(k, expected_keys, 1)[0]}" for k in self.unexpected[:3] if nearest(k, expected_keys, 1)]
            if hints:
                lines.append(f"  closest expected names: {'; '.join(hints)}")
        if self.wrong_shape:
            shown = [f"{k}: got {tuple(got)}, expected {tuple(want)}" for k, got, want in self.wrong_shape[:10]]
            lines.append(f"  wrongly shaped keys ({len(self.wrong_shape)}): {'; '.join(shown)}")
        lines.append(
            "  Is this state_dict for another architecture or variant (number of classes, "
            "aux heads), or saved with a prefix such as 'module.'?"
        )
        super().__init__("\n".join(lines))


def _listing(keys: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def nearest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates most similar to `name`, best first (for 'did you mean')."""
    candidates = list(candidates)
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    if close:
        return close
    return [c for c in candidates if c.startswith(name) or name.startswith(c)][-n:]
