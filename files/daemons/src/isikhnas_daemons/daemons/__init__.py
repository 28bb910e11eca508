"""One module per daemon; each exposes ``build(context) -> App`` and the console entry point ``main``."""
