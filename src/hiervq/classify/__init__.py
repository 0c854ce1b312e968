"""Classifiers on the codes / features of pretrained discrete autoencoders (semi-supervised, few labels)."""

from .mlp import ClassifierConfig, ClassifierResult, FeatureClassifier, MLPHead, extract_features, fit_classifier

__all__ = [
    "ClassifierConfig",
    "ClassifierResult",
    "FeatureClassifier",
    "MLPHead",
    "extract_features",
    "fit_classifier",
]
