"""GAN dissection (Bau et al., "GAN Dissection", ICLR 2019, §3.1): every unit of a generator layer
against the concepts of the images the generator draws.

    1. sample N latents z, draw G(z), segment each image (`jaxvis.analysis.gan.samples`)
    2. T_u = the top-`quantile` level of unit u over every sample and position (quantile 0.01:
       davidbau/dissect's experiment default for generators, `--quantile 0.01`)
    3. upsample u's map bilinearly to the image's size, S_u = {A_u > T_u}, and tally
       IoU[u, c] = Σ|S_u ∩ L_c| / Σ|S_u ∪ L_c| over the samples -- the classifier dissection's
       passes (`jaxvis.analysis.units.dissect`), run on the generator with z as its inputs

    found = jaxvis.analysis.gan.dissect.dissect(generator, "main.8", samples=512)
    print(found.table())
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvis.analysis.gan.samples import BATCH, GeneratedConcepts, UnknownConceptError, require_generator, sample_concepts
from jaxvis.analysis.units import dissect as units_dissect
from jaxvis.analysis.units.dissect import Dissection
from jaxvis.models.model import Model

QUANTILE = 0.01  # davidbau/dissect, experiment/dissect_experiment.py: --quantile 0.01
SAMPLES = 512


def dissect(generator: Model, layer: str, *, samples: int = SAMPLES, seed: int = 0,
            data: GeneratedConcepts | None = None, quantile: float = QUANTILE, batch_size: int = BATCH,
            progress: bool = True, **options: Any) -> Dissection:
    """Label every unit of `layer` with the concept of the drawn images its top activations match best."""
    require_generator(generator, "GAN dissection")
    if layer not in generator.layers:
        from jaxvis.core.errors import UnknownLayerError

        raise UnknownLayerError([layer], generator.name, generator.layers)
    data = data if data is not None else sample_concepts(generator, samples, seed=seed, batch_size=batch_size,
                                                         progress=progress)
    size = generator.input_size
    return units_dissect.dissect(generator, layer, data, quantile=quantile, size=size, seg_size=size,
                                 batch_size=batch_size, progress=progress, **options)


def concept_units(found: Dissection, concept: str, k: int) -> list[int]:
    """The `k` units of the dissected layer with the highest IoU for `concept` (best first)."""
    names = list(found.concepts.names)
    if concept not in names[1:]:
        raise UnknownConceptError(f"unknown concept {concept!r}; known: {', '.join(names[1:])}.")
    column = found.iou[:, names.index(concept)]
    return [int(u) for u in np.argsort(-column, kind="stable")[:k]]
