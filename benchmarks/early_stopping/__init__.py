"""Early stopping benchmark (issue 12): a bank of real learning curves, a replay train function,
synthetic curve families, and the side-by-side comparison of schedulers and searchers."""
