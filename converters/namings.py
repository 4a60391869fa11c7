"""Translations from other libraries' state_dict names into the naming a model mirrors.

A `Naming` recognises a foreign state_dict by its keys and renames each key into
the target library's naming; `converters.mapping` then does the generic rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Naming:
    name: str
    detect: Callable[[Collection[str]], bool]
    rename: Callable[[str], str]


def detect_naming(keys: Collection[str], namings: Sequence[Naming]) -> Naming | None:
    return next((naming for naming in namings if naming.detect(keys)), None)


def efficientnet_pytorch_to_timm(stage_depths: Sequence[int]) -> Naming:
    """lukemelas/efficientnet_pytorch (and its EfficientNet-Lite fork) -> timm's EfficientNet.

    efficientnet_pytorch numbers blocks globally (`_blocks.7`), timm by stage
    (`blocks.3.0`).  Inside a block with an expansion conv, `_expand_conv/_bn0`,
    `_depthwise_conv/_bn1`, `_project_conv/_bn2` become `conv_pw/bn1`,
    `conv_dw/bn2`, `conv_pwl/bn3`; the first block of stage 0 has no expansion
    and is timm's DepthwiseSeparableConv (`conv_dw/bn1`, `conv_pw/bn2`).
    """
    block_index = [(stage, j) for stage, depth in enumerate(stage_depths) for j in range(depth)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    inverted = {
        "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
        "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
    }

    def rename(key: str) -> str:
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if match:
            number, module, leaf = int(match.group(1)), match.group(2), match.group(3)
            if number >= len(block_index):
                return key
            stage, j = block_index[number]
            table = separable if stage == 0 else inverted
            return f"blocks.{stage}.{j}.{table.get(module, module)}.{leaf}"
        module, _, leaf = key.partition(".")
        return f"{top.get(module, module)}.{leaf}"

    return Naming(
        name="efficientnet_pytorch",
        detect=lambda keys: "_conv_stem.weight" in keys,
        rename=rename,
    )
