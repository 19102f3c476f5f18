"""Policy models for ecomjax (Flax NNX)."""
