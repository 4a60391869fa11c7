"""Images and data sets: reading and writing images (`io`), ImageNet's class names (`imagenet`), image folders
and segmented data sets (`datasets`, `segmentation`); the package's data files live beside them."""
