"""Training data: ``prep`` (sources -> 16 kHz segments + JSONL manifest) and ``extract`` (teacher features -> HDF5).

Inference code never imports this package.
"""
