"""The pieces an optimization is made of, each a small pure function or piece of data: objectives, image
parameterizations (`param`, `eps_ball`), transforms, optimizers (optax transformations), token objectives and
unit edits."""
