"""What single units mean, from data: streamed statistics and the studies built on them.

- `topk`, `quantiles`, `iou`: pure, mergeable per-unit statistics (one jitted update per batch);
- `stream`: runs such a statistic over a data set (padded batches, sharded over devices, resumable);
- `survey`: one pass giving each unit's (and random directions') top images and quantiles;
- `dissect`: network dissection, each unit labelled with the concept it segments best;
- `concept_set`: an offline concept-segmentation set (colour names on real photos, texture collages).
"""
