"""Generators studied like classifiers: GAN dissection (Bau et al., ICLR 2019) on a pretrained generator.

- `faces`: concept masks for generated faces, from dlib's 68 facial landmarks, plus colour names;
- `samples`: a sampled, cached concept data set of (z, image, masks), streamed like any data set;
- `dissect`: every unit of a generator layer against those concepts (the classifier dissection's code).
"""
