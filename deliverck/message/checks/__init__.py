"""The message checks: one module per concern, each with CHECK and `async def run(mctx)`."""
