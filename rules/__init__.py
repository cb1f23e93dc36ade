"""Worked VJP rules: linear, ReLU, softmax, cross-entropy and a two-layer classifier.

Each module derives its rule in its docstring; ``vjpcheck check rules`` checks them all.
"""

from rules.cross_entropy import cross_entropy
from rules.linear import linear
from rules.relu import relu
from rules.softmax import softmax
from rules.two_layer import two_layer_classifier

__all__ = ["cross_entropy", "linear", "relu", "softmax", "two_layer_classifier"]
