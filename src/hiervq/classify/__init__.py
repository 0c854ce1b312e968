"""Classifiers on the codes / features of pretrained discrete autoencoders (semi-supervised, few labels): the
heads, feature extraction and the classifier task; :func:`hiervq.train.fit_classifier` fits one."""

from .mlp import ClassifierConfig, ClassifierResult, ConvClassifier, FeatureClassifier, MLPHead, extract_features
from .task import ClassifierTask

__all__ = [
    "ClassifierConfig",
    "ClassifierResult",
    "ConvClassifier",
    "FeatureClassifier",
    "MLPHead",
    "ClassifierTask",
    "extract_features",
]
