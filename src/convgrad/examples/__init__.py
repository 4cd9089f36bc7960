"""Worked examples that train networks built from convgrad's layers.

``convgrad.examples.digits``: a two-convolution CNN on scikit-learn's bundled 8x8 digits
(``convgrad train-digits`` or ``python -m convgrad.examples.digits``). Examples need the
``examples`` extra (scikit-learn, tqdm, matplotlib), imported only when they run.
"""
