"""What the networks' units do: surveys, dissection, examples and ablation (`units`), GAN dissection and unit
ranking (`gan`), attribution maps (`attribution`)."""
