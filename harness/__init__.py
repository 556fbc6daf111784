"""What the tests and the benchmarks share (not under tests/, so bench/ stands alone): private sandboxes on
free ports and displays, a peak-RSS sampler, and a raw CDP page session."""
