"""What the changed regions do and connect to, from the coordinate databases.

- :mod:`~neurochange.decode.terms`: NeuroQuery's per-study term counts as annotations (TF-IDF,
  frequency or raw counts) and the labels a frequency threshold makes of them;
- :mod:`~neurochange.decode.regions`: a region (sphere, mask image, cluster of a results folder)
  and the studies that report a focus in it;
- :mod:`~neurochange.decode.discrete`: Neurosynth's decoding of a set of studies against the rest
  (uniformity and association chi-square tests per term), as NiMARE 0.22.1's ``NeurosynthDecoder``.
"""
