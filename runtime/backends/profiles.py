"""TensorRT optimisation profiles: the shape ranges an engine accepts, and which profile (or
which chunks of a batch) runs a given (batch, sequence length).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crisislens.runtime.errors import CrisisLensError

Triple = tuple[int, int, int]  # (min, opt, max)


class NoProfileFits(CrisisLensError, ValueError):
    """No optimisation profile accepts the requested (batch, seq)."""


def check_positive(what: str, value: int) -> None:
    """A ValueError unless `value` is a positive int (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ShapeRange:
    """min/opt/max shape of one input in one profile; TensorRT tunes its kernels for `opt`."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ValueError(f"min/opt/max shapes differ in rank: {self.min}, {self.opt}, {self.max}")
        for lo, mid, hi in zip(self.min, self.opt, self.max):
            if not 1 <= lo <= mid <= hi:
                raise ValueError(
                    f"shapes must satisfy 1 <= min <= opt <= max per axis: {self.min}, {self.opt}, {self.max}"
                )

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShapeRange:
        return cls(tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))


@dataclass(frozen=True)
class ProfileSpec:
    """One TensorRT optimisation profile: the (min, opt, max) batch and sequence length it was made
    from, and the resulting shape range of every input (what `IOptimizationProfile.set_shape` gets)."""

    batch: Triple
    seq: Triple
    shapes: Mapping[str, ShapeRange] = field(hash=False)

    def covers(self, batch: int, seq: int) -> bool:
        return self.batch[0] <= batch <= self.batch[2] and self.seq[0] <= seq <= self.seq[2]

    def describe(self) -> str:
        (b0, b1, b2), (s0, s1, s2) = self.batch, self.seq
        return f"batch {b0}..{b2} (opt {b1}), seq {s0}..{s2} (opt {s1})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": list(self.batch),
            "seq": list(self.seq),
            "shapes": {name: r.to_dict() for name, r in self.shapes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileSpec:
        b, s = tuple(data["batch"]), tuple(data["seq"])
        if len(b) != 3 or len(s) != 3:
            raise ValueError("batch and seq must be [min, opt, max]")
        return cls(
            (b[0], b[1], b[2]),
            (s[0], s[1], s[2]),
            {name: ShapeRange.from_dict(r) for name, r in data["shapes"].items()},
        )


def select_profile(profiles: Sequence[ProfileSpec], batch: int, seq: int) -> int:
    """Index of the profile to run (batch, seq) with: the smallest that covers it, whose opt shape
    is closest. Raises `NoProfileFits` listing the profiles when none does."""
    check_positive("batch", batch)
    check_positive("seq", seq)
    fitting = [i for i, p in enumerate(profiles) if p.covers(batch, seq)]
    if not fitting:
        ranges = "; ".join(f"#{i}: {p.describe()}" for i, p in enumerate(profiles)) or "none"
        raise NoProfileFits(
            f"no optimisation profile accepts batch {batch}, seq {seq} (profiles: {ranges}); "
            "split the batch or rebuild the engine with larger buckets"
        )
    return min(fitting, key=lambda i: (profiles[i].batch[2], profiles[i].seq[2], i))


def plan_batches(profiles: Sequence[ProfileSpec], batch: int, seq: int) -> list[tuple[int, int, int]]:
    """(start, stop, profile index) slices that run a batch of `batch` rows padded to `seq` tokens.

    One slice when a profile covers the whole batch; otherwise chunks of the largest batch any
    profile takes at this length (a caller's batch of 64 on an engine built for <= 32). A sequence
    no profile accepts still raises `NoProfileFits`: that needs another engine, not smaller chunks.
    """
    check_positive("batch", batch)
    check_positive("seq", seq)
    if any(p.covers(batch, seq) for p in profiles):
        return [(0, batch, select_profile(profiles, batch, seq))]
    # only profiles from batch 1 up: the last, shorter chunk must fit one too
    largest = max((p.batch[2] for p in profiles if p.batch[0] == 1 and p.seq[0] <= seq <= p.seq[2]), default=0)
    if largest == 0:
        select_profile(profiles, batch, seq)  # raises, listing the profiles
    plan = []
    for start in range(0, batch, largest):
        stop = min(start + largest, batch)
        plan.append((start, stop, select_profile(profiles, stop - start, seq)))
    return plan
