"""Data: the labelled corpus a scan reads (:class:`Corpus`: texts, optional category labels, a fingerprint of every
byte) and the ready-made corpora that need no download (:mod:`.datasets`). Imports nothing from mri_lens but
:mod:`mri_lens.errors`.
"""

from . import datasets
from .corpus import Corpus, as_corpus, check_categories

__all__ = ["Corpus", "as_corpus", "check_categories", "datasets"]
