"""Demo data: a deterministic, realistic shop (catalog, stock, 18 months of sales, refunds).

Run ``python -m demo.generate --help``; ``demo.generate.generate`` is the same from Python.
"""
