"""transferlm: fine-tune a pretrained causal LM on scripts and measure what transfer learning saves."""

__version__ = "0.1.0"
