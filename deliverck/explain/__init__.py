"""`deliverck explain`: a bounce (status code, reply line, pasted text, .eml, mbox, directory) -> cause, owner, fix, checks.

See docs/explain.md.  Public entry points: explain_text, explain_bytes,
explain_path, iter_directory (engine.py); render_* (render.py).
"""

from deliverck.explain.engine import explain_bytes, explain_path, explain_text, iter_directory
from deliverck.explain.model import SCHEMA, Explanation

__all__ = ["SCHEMA", "Explanation", "explain_bytes", "explain_path", "explain_text", "iter_directory"]
