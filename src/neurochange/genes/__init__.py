"""Imaging transcriptomics: which genes' regional expression (Allen Human Brain Atlas) follows a results map,
tested against nulls that fit coordinate-based maps (:mod:`neurochange.workflows.genes` runs it)."""
