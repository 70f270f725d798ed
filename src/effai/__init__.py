"""effai: make neural networks efficient, and prove it with measurements."""
__version__ = "0.1.0"
