"""Detectron (Caffe2) model-zoo checkpoints -> torchvision detection models."""
