"""Pages a person opens: the gallery, the atlas and GANPaint's server (with `jaxvis.cli`, the top layer)."""
