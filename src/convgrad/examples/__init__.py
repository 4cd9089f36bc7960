"""Worked examples that train networks built from convgrad's layers.

``convgrad.examples.digits``: a two-convolution CNN on scikit-learn's bundled 8x8 digits
(``convgrad train-digits`` or ``python -m convgrad.examples.digits``). Examples need the
``examples`` extra (scikit-learn, tqdm, matplotlib), imported only when they run.

With the ``dask`` extra: ``convgrad.examples.out_of_core`` (forward and dE/dw over a data
set on disk in bounded memory) and ``convgrad.examples.digits_dask`` (the digits CNN
trained data-parallel on a 2-process LocalCluster, ``convgrad train-digits-dask``).
"""
