"""ltbench: a benchmark harness for long-tailed image classification.

Built around decoupled training (stage 1: feature extractor, stage 2: classifier re-training) and the
SWA + SRepr method of Nam, Jang & Lee (ICLR 2023). See README.md for the quick start.
"""
__version__ = "0.1.0"
