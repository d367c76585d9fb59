"""Estimators: from a StudySet to statistic maps (ALE, MKDA density, KDA, MKDA chi-square)."""
