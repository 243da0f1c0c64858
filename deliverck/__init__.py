"""deliverck: predict the bounces a mail server will cause."""

__version__ = "0.2.0"
