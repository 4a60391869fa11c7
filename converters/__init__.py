"""PyTorch state_dicts -> Flax variable trees whose names mirror the torch modules.

Imports nothing from jaxvis: it maps a source state_dict onto the target tree it
is given and says precisely what did not fit.  It never imports torch: PyTorch's
checkpoints are read by `converters.torch_file` (allow-listed unpickling, nothing
executed), `.safetensors` by safetensors' numpy backend, weights fetched by
`converters.download` with the standard library.
"""

from converters.errors import (
    ChecksumError,
    ConversionError,
    StateDictMismatchError,
    UnsafeWeightFileError,
    WeightFileError,
    WeightsNotFoundError,
)
from converters.mapping import convert_state_dict, expected_keys
from converters.namings import Naming, detect_naming, efficientnet_pytorch_to_timm
from converters.read import as_numpy_state_dict, read_state_dict
from converters.resolve import ResolvedWeights, WeightSource, find_local, find_weights, sha256_of, verify_checksum

__all__ = [
    "ChecksumError",
    "ConversionError",
    "Naming",
    "ResolvedWeights",
    "StateDictMismatchError",
    "UnsafeWeightFileError",
    "WeightFileError",
    "WeightSource",
    "WeightsNotFoundError",
    "as_numpy_state_dict",
    "convert_state_dict",
    "detect_naming",
    "efficientnet_pytorch_to_timm",
    "expected_keys",
    "find_local",
    "find_weights",
    "read_state_dict",
    "sha256_of",
    "verify_checksum",
]
