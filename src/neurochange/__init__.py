"""neurochange: what changes in the brain after psychotherapy, TMS or medication.

Coordinate-based meta-analysis of treatment neuroimaging, from a coordinate
corpus to a report.
"""

__version__ = "0.1.0"
